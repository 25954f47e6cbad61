"""The local model on first use from the Hugging Face Hub (a loopback mirror), the HF cache offline, and
`mini models pull | list`.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import, into `huggingface_hub.constants`
(ENDPOINT, the file-URL template derived from it, HF_HUB_CACHE, HF_HUB_OFFLINE), and another test may have
imported it already; so these tests set those constants to what that import would have produced.
`mini.embeddings.hub` reads them at call time.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mini.embeddings import hub, local_onnx
from mini.embeddings.local_onnx import INSTALL_COMMAND, MODEL_PACKAGE, LocalOnnxEmbedder
from mini.errors import ConfigurationError, ModelNotFoundError
from tests.embeddings.hub_mirror import HubMirror

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(MODEL_PACKAGE) is None, reason="the mirror serves the bundled model's files"
)

TEXTS = ["The cat sat on the mat.", "Quarterly revenue grew by ten percent."]
ROTARY_REPO = "acme/rotary-bert"


@pytest.fixture(scope="module")
def bundled_dir() -> Path:
    path = local_onnx.bundled_model_dir()
    assert path is not None
    return path


@pytest.fixture(scope="module")
def mirror(bundled_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubMirror]:
    # A repo whose config asks for rotary positions; its weights are the bundled ones (a symlink, not a copy).
    rotary = tmp_path_factory.mktemp("rotary")
    config = json.loads((bundled_dir / "config.json").read_text())
    (rotary / "config.json").write_text(json.dumps(config | {"position_embedding_type": "rotary"}))
    for name in ("tokenizer.json", "model.safetensors"):
        (rotary / name).symlink_to(bundled_dir / name)
    served = HubMirror({hub.DEFAULT_REPO: bundled_dir, ROTARY_REPO: rotary}).start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared: the downloaded weights are byte-identical to the bundled ones, so the graph is built once.
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def reference(bundled_dir: Path, graph_cache: Path) -> np.ndarray:
    embedder = LocalOnnxEmbedder(model_path=str(bundled_dir), cache_dir=str(graph_cache))
    return embedder_vectors(embedder)


def embedder_vectors(embedder: LocalOnnxEmbedder) -> np.ndarray:
    from mini import _portal

    return _portal.run(embedder.embed(TEXTS))


@pytest.fixture
def hf(mirror: HubMirror, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HubMirror:
    """HF_ENDPOINT=mirror, HF_HOME in tmp_path, online; the bundled package hidden; no MINI_* settings."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "ENDPOINT", mirror.url)
    # Derived from ENDPOINT at import; file URLs are built from it.
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", mirror.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setitem(sys.modules, MODEL_PACKAGE, None)  # makes its import fail: "not installed"
    for var in ("MINI_MODEL_PATH", "MINI_CACHE_DIR", "MINI_EMBEDDING_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    mirror.requests.clear()
    return mirror


def _gets(mirror: HubMirror) -> list[str]:
    return [path for method, path in mirror.requests if method == "GET" and "/resolve/" in path]


def test_first_use_downloads_the_model_and_later_uses_work_offline_from_the_cache(
    hf: HubMirror, graph_cache: Path, reference: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as constants

    vectors = embedder_vectors(LocalOnnxEmbedder(cache_dir=str(graph_cache)))
    np.testing.assert_allclose(vectors, reference, atol=1e-6)
    assert ("GET", f"/api/models/{hub.DEFAULT_REPO}/revision/main") in hf.requests
    fetched = {path.rsplit("/resolve/", 1)[1].split("/", 1)[1] for path in _gets(hf)}
    # Only what the embedder reads: the repo's README, vocab.txt, data_config.json... stay on the Hub.
    assert fetched == {
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
    }

    hf.requests.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    again = embedder_vectors(LocalOnnxEmbedder(cache_dir=str(graph_cache)))
    np.testing.assert_array_equal(again, vectors)
    assert hf.requests == []


def test_a_cached_model_is_used_without_asking_the_hub(hf: HubMirror, graph_cache: Path) -> None:
    first = hub.ensure_model(hub.DEFAULT_REPO)
    hf.requests.clear()
    assert hub.ensure_model(hub.DEFAULT_REPO) == first  # online, yet no request: the cache is complete
    assert hf.requests == []


def test_offline_with_an_empty_cache_names_mini_models_pull(
    hf: HubMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError) as info:
        embedder_vectors(LocalOnnxEmbedder())
    message = str(info.value)
    assert "`mini models pull`" in message
    assert "HF_HUB_OFFLINE" in message
    assert INSTALL_COMMAND in message
    assert hf.requests == []


def test_an_unsupported_architecture_is_refused_before_its_weights_are_fetched(hf: HubMirror) -> None:
    with pytest.raises(ConfigurationError, match="absolute positions") as info:
        embedder_vectors(LocalOnnxEmbedder(ROTARY_REPO))
    assert "only absolute position embeddings" in str(info.value)
    fetched = _gets(hf)
    assert any(path.endswith("/config.json") for path in fetched)
    assert not any(path.endswith("model.safetensors") for path in fetched)


def test_models_pull_then_list_shows_the_cached_model_and_its_size(hf: HubMirror) -> None:
    from mini.cli.main import app

    runner = CliRunner()
    pulled = runner.invoke(app, ["models", "pull"], catch_exceptions=False)
    assert pulled.exit_code == 0, pulled.output
    assert "384 dimensions, mean pooling, up to 256 tokens" in pulled.output

    listed = runner.invoke(app, ["models", "list", "--json"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)  # the bundled package is hidden: only the HF cache's copy
    assert row["model"] == f"local:{hub.DEFAULT_REPO}"
    assert (row["source"], row["status"]) == ("hf-cache", "ready")
    assert row["size_bytes"] > 90_000_000  # the weights are there

    bare = runner.invoke(app, ["models", "pull", "bge-small-en-v1.5"])
    assert bare.exit_code == 2
    assert "org/repo" in bare.output
    missing = runner.invoke(app, ["models", "pull", "local:acme/no-such-model"])
    assert missing.exit_code == 2
    assert "no model 'acme/no-such-model'" in missing.output


def test_a_partial_cache_is_completed_not_trusted(hf: HubMirror) -> None:
    folder = hub.ensure_model(hub.DEFAULT_REPO)
    (folder / "model.safetensors").unlink()  # e.g. a download interrupted before the weights
    assert hub.find_cached(hub.DEFAULT_REPO) is None
    hf.requests.clear()
    assert hub.ensure_model(hub.DEFAULT_REPO) == folder
    assert (folder / "model.safetensors").is_file()
    assert any(path.endswith("model.safetensors") for _, path in hf.requests)  # the Hub was asked
