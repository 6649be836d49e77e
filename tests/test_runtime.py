"""mtlib.runtime: profiles, seeding, the printed line, hub detection."""
import random
import re

import numpy as np
import pytest
import torch

import mtlib
from mtlib import runtime
from mtlib.runtime import Config, ProfileError


@pytest.fixture(autouse=True)
def _keep_threads():
    """setup(threads=...) changes torch's global thread count: put it back after each test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_profile_env(monkeypatch):
    monkeypatch.delenv("MTLIB_PROFILE", raising=False)


# ------------------------------------------------------------------------------------------ profile choice
@pytest.mark.parametrize("name", ["full", "local", "smoke"])
def test_profile_from_argument(name, monkeypatch):
    monkeypatch.setenv("MTLIB_PROFILE", "local" if name != "local" else "smoke")
    cfg = mtlib.setup(profile=name, verbose=False)
    assert cfg.profile == name  # the argument wins over the environment
    assert cfg.offline == (name != "full")


def test_profile_argument_is_normalised():
    assert mtlib.setup(profile="  SMOKE ", verbose=False).profile == "smoke"


@pytest.mark.parametrize("name", ["smoke", "full", "Local"])
def test_profile_from_environment(name, monkeypatch):
    monkeypatch.setenv("MTLIB_PROFILE", name)
    assert mtlib.setup(verbose=False).profile == name.lower()


def test_automatic_profile_without_gpu_is_local(no_profile_env):
    if runtime.pick_device().type != "cpu":
        pytest.skip("this machine has a GPU")
    cfg = mtlib.setup(verbose=False)
    assert cfg.profile == "local"
    assert cfg.device == torch.device("cpu")


@pytest.mark.parametrize("hub", [True, False])
def test_automatic_profile_on_a_cpu_is_local_even_with_the_hub(hub, monkeypatch, no_profile_env):
    monkeypatch.setattr(runtime, "pick_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=2.0: hub)
    assert mtlib.setup(verbose=False).profile == "local"


def test_empty_environment_value_means_automatic(monkeypatch):
    monkeypatch.setenv("MTLIB_PROFILE", "")
    assert mtlib.setup(verbose=False).profile == "local"


@pytest.mark.parametrize("hub, expected", [(True, "full"), (False, "local")])
def test_automatic_profile_with_gpu_depends_on_the_hub(hub, expected, monkeypatch, no_profile_env):
    monkeypatch.setattr(runtime, "pick_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=2.0: hub)
    cfg = mtlib.setup(verbose=False)
    assert cfg.profile == expected
    assert cfg.device.type == "cuda"


def test_auto_profile_cpu_never_full(monkeypatch):
    monkeypatch.setattr(runtime, "hub_reachable", lambda timeout=2.0: True)
    assert runtime.auto_profile(torch.device("cpu")) == "local"
    assert runtime.auto_profile(torch.device("mps")) == "full"


@pytest.mark.parametrize("bad", ["fast", "gpu", "locale"])
def test_unknown_profile_argument_raises(bad):
    with pytest.raises(ProfileError) as err:
        mtlib.setup(profile=bad, verbose=False)
    message = str(err.value)
    assert repr(bad) in message
    for valid in ("full", "local", "smoke"):
        assert valid in message
    assert "MTLIB_PROFILE" in message
    assert isinstance(err.value, ValueError)


def test_unknown_profile_from_environment_raises(monkeypatch):
    monkeypatch.setenv("MTLIB_PROFILE", "colab")
    with pytest.raises(ProfileError, match=r"'colab'.*full, local, smoke"):
        mtlib.setup(verbose=False)


# ----------------------------------------------------------------------------------------------- seeding
def _draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), torch.randint(0, 10**6, (2,)).tolist()


def test_seeding_is_reproducible():
    mtlib.setup(profile="local", seed=123, verbose=False)
    first = _draws()
    mtlib.setup(profile="local", seed=123, verbose=False)
    assert _draws() == first
    mtlib.setup(profile="local", seed=124, verbose=False)
    other = _draws()
    for a, b in zip(first, other):  # every generator depends on the seed
        assert a != b


def test_seed_is_recorded():
    assert mtlib.setup(profile="local", seed=7, verbose=False).seed == 7


def test_threads_argument():
    cfg = mtlib.setup(profile="local", threads=1, verbose=False)
    assert torch.get_num_threads() == 1
    assert cfg.threads == 1


# -------------------------------------------------------------------------------------------------- pick
def test_pick_per_profile():
    cpu = torch.device("cpu")
    assert Config("smoke", cpu).pick(smoke=1, local=2, full=3) == 1
    assert Config("local", cpu).pick(smoke=1, local=2, full=3) == 2
    assert Config("full", cpu).pick(smoke=1, local=2, full=3) == 3


def test_pick_full_defaults_to_local():
    assert Config("full", torch.device("cpu")).pick(smoke=1, local=2) == 2
    assert Config("full", torch.device("cpu")).pick(smoke=1, local=2, full=0) == 0  # a falsy value is kept


def test_pick_full_none_is_none():
    """full=None is a value (the whole split for data.sample), not "as local": chapter 02's Colab crash."""
    assert Config("full", torch.device("cpu")).pick(smoke=256, local=800, full=None) is None
    assert Config("local", torch.device("cpu")).pick(smoke=256, local=800, full=None) == 800


@pytest.mark.parametrize("name", ["smoke", "local", "full"])
def test_pick_under_the_rehearsal_takes_smoke_sizes(name):
    assert Config(name, torch.device("cpu"), rehearsal=True).pick(smoke=1, local=2, full=3) == 1


def test_pick_needs_keywords():
    with pytest.raises(TypeError):
        Config("local", torch.device("cpu")).pick(1, 2)


# ------------------------------------------------------------------------------------------ printed line
def test_setup_prints_one_line(capsys):
    mtlib.setup(profile="smoke", seed=5)
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
    pattern = (rf"mtlib smoke profile \| device {runtime.pick_device().type} \| seed 5 "
               rf"\| torch {re.escape(torch.__version__)} \| {torch.get_num_threads()} CPU threads")
    assert re.fullmatch(pattern, out.strip()), out


def test_setup_quiet(capsys):
    mtlib.setup(profile="local", verbose=False)
    assert capsys.readouterr().out == ""


def test_setup_silences_progress_bars():
    import datasets
    import transformers

    transformers.utils.logging.enable_progress_bar()
    datasets.enable_progress_bars()
    transformers.logging.set_verbosity_warning()
    mtlib.setup(profile="local", verbose=False)
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert not datasets.is_progress_bar_enabled()
    assert transformers.logging.get_verbosity() == transformers.logging.ERROR


# ------------------------------------------------------------------------------------------------- hub
@pytest.mark.parametrize("value", ["1", "true", "True", "yes"])
def test_hf_hub_offline_means_unreachable(value, monkeypatch):
    calls = []
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    monkeypatch.setattr(runtime.socket, "create_connection", lambda *a, **k: calls.append(a))
    assert runtime.hub_reachable() is False
    assert calls == []  # decided from the variable, without trying the network


@pytest.mark.parametrize("value", ["0", ""])
def test_hub_reachable_tries_the_network_when_not_offline(value, monkeypatch):
    calls = []

    class Conn:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake(address, timeout=None):
        calls.append(address)
        return Conn()

    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(runtime.socket, "create_connection", fake)
    assert runtime.hub_reachable() is True
    assert calls == [("huggingface.co", 443)]
    for endpoint, address in (("https://hf-mirror.com", ("hf-mirror.com", 443)),
                              ("http://10.0.0.5:8080/", ("10.0.0.5", 8080))):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)  # a mirror, as readers in mainland China use
        assert runtime.hub_reachable() is True
        assert calls[-1] == address


def test_hub_unreachable_when_the_connection_fails(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # the suite's network guard refuses the connection with an OSError
    assert runtime.hub_reachable(timeout=0.5) is False


def test_pick_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert runtime.pick_device() == torch.device(expected)


# ------------------------------------------------------------------------------------------ the rehearsal
def test_rehearsal_is_the_full_profile_at_smoke_sizes(monkeypatch, capsys):
    monkeypatch.setenv("MTLIB_REHEARSAL", "1")
    monkeypatch.setenv("MTLIB_PROFILE", "local")  # the rehearsal wins: it is a run of the full profile
    cfg = mtlib.setup()
    assert (cfg.profile, cfg.rehearsal, cfg.offline) == ("full", True, False)
    assert cfg.pick(smoke=1, local=2, full=3) == 1
    assert "rehearsal" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_no_rehearsal_by_default(value, monkeypatch):
    monkeypatch.setenv("MTLIB_REHEARSAL", value)
    assert mtlib.setup(profile="local", verbose=False).rehearsal is False


# ------------------------------------------------------------------------------------------ model overrides
def test_models_from_argument_and_environment(monkeypatch, tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("MTLIB_MODELS", f"encoder=bert-base-chinese, decoder={tmp_path}")
    cfg = mtlib.setup(profile="local", models={"encoder": "hfl/chinese-roberta-wwm-ext"})
    assert cfg.models == {"encoder": "hfl/chinese-roberta-wwm-ext", "decoder": str(tmp_path)}  # argument wins
    out = capsys.readouterr().out
    assert "encoder: hfl/chinese-roberta-wwm-ext (chosen in this run)" in out


def test_no_models_chosen(monkeypatch):
    monkeypatch.delenv("MTLIB_MODELS", raising=False)
    assert mtlib.setup(profile="local", verbose=False).models == {}


def test_unknown_role_in_models():
    with pytest.raises(ProfileError, match=r"Unknown role 'teacher'.*encoder, student, decoder"):
        mtlib.setup(profile="local", models={"teacher": "gpt2"}, verbose=False)


def test_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ProfileError, match="is not a model folder: it has no config.json"):
        mtlib.setup(profile="local", models={"encoder": str(tmp_path)}, verbose=False)
    with pytest.raises(ProfileError, match="no config.json"):
        mtlib.setup(profile="local", models={"encoder": "./no/such/folder"}, verbose=False)


def test_malformed_models_variable(monkeypatch):
    monkeypatch.setenv("MTLIB_MODELS", "bert-base-chinese")
    with pytest.raises(ProfileError, match="role=model pairs"):
        mtlib.setup(profile="local", verbose=False)
