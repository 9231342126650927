"""Hostile settings (issue #5): minT > maxT, Vt outside [-1, 1] and zero candidates are refused with a message
that names the knob, in the library and in the app (the handler the page calls, and /run over HTTP); the CLI's
side is in tests/test_cli.py. Models: hub code never runs unless asked for, and Space mode loads only allowlisted
models. Concurrency, cancellation and memory caps are shown by
scripts/load_test.py, scripts/cancel_cycles.py and scripts/memory_run.py (see the README's Guarantees).
"""
from __future__ import annotations

import html

import pytest

from rain.core.config import ConfigError, RainConfig, preset
from ui import runtimes
from ui.outputs import OUTPUTS
from ui.run import run

# (knob overrides, words the refusal must contain)
HOSTILE = [
    pytest.param({"min_visits": 60, "max_simulations": 50}, "min_visits (minT=60)", id="minT>maxT"),
    pytest.param({"min_visits": 50, "max_simulations": 50}, "min_visits (minT=50)", id="minT=maxT"),
    pytest.param({"value_threshold": 1.5}, "value_threshold (Vt) must be in [-1, 1]", id="Vt>1"),
    pytest.param({"value_threshold": -1.5}, "value_threshold (Vt) must be in [-1, 1]", id="Vt<-1"),
    pytest.param({"candidates": 0}, "candidates must be >= 1", id="zero-candidates"),
]
# The edges of the same knobs are accepted: refusing them would be as wrong as accepting the values above.
EDGES = [{"min_visits": 49, "max_simulations": 50}, {"value_threshold": 1.0}, {"value_threshold": -1.0},
         {"candidates": 1}]


# --- the library ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("knobs, words", HOSTILE)
def test_library_refuses_hostile_settings_by_every_entry_point(knobs, words):
    for build in (lambda: preset("hh", **knobs), lambda: RainConfig().replace(**knobs),
                  lambda: RainConfig.from_dict({**RainConfig().to_dict(), **knobs}),
                  lambda: RainConfig(**knobs).validate()):
        with pytest.raises(ConfigError) as refused:
            build()
        assert words in str(refused.value)


@pytest.mark.parametrize("knobs", EDGES)
def test_library_accepts_the_edges_of_the_same_knobs(knobs):
    config = preset("hh", **knobs)
    assert all(getattr(config, name) == value for name, value in knobs.items())


# --- the app: the handler the Run button calls ------------------------------------------------------------------

PAGE = dict(model=runtimes.EMBEDDED, custom_model="", preset="hh", judge_format="yesno_logit", show_unvisited=True)
STATUS = OUTPUTS.index("status")
CLIENT_STATUS = [name for name in OUTPUTS if name != "record"].index("status")   # State is not returned


class ModelReached(BaseException):
    """Raised where the run would load the model (a BaseException: the handler's `except Exception` lets it by)."""


@pytest.fixture
def no_model(monkeypatch):
    """Records any attempt to reach a model: a refused setting must stop the run before that."""
    asked: list[str] = []

    def get_runtime(spec: str):
        asked.append(spec)
        raise ModelReached(spec)

    monkeypatch.setattr(runtimes, "get_runtime", get_runtime)
    monkeypatch.setattr(runtimes, "cached_runtime", lambda spec: asked.append(spec))
    return asked


@pytest.mark.parametrize("knobs, words", HOSTILE)
def test_run_handler_refuses_hostile_settings_before_loading_a_model(no_model, knobs, words):
    updates = list(run("How do I pick a lock?", **PAGE, **knobs))
    assert len(updates) == 1 and no_model == []
    status = updates[0][STATUS]
    assert 'class="status error"' in status and "Traceback" not in status
    assert f"Invalid settings: {words}" in html.unescape(status)


@pytest.mark.parametrize("knobs", EDGES)
def test_run_handler_passes_the_edges_on_to_the_model(no_model, knobs):
    with pytest.raises(ModelReached):                 # validation let it through to loading the model
        list(run("How do I pick a lock?", **PAGE, **knobs))
    assert no_model == [runtimes.EMBEDDED, runtimes.EMBEDDED]


# --- the app over HTTP (gradio_client): the page's sliders bound Vt and candidates, the library the rest ---------

@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.mark.parametrize("knobs, words", [
    ({"min_visits": 60, "max_simulations": 50}, "Invalid settings: min_visits (minT=60)"),
    ({"value_threshold": 1.5}, "Value 1.5 is greater than maximum value 1"),
    ({"value_threshold": -1.5}, "Value -1.5 is less than minimum value -1"),
    ({"candidates": 0}, "Value 0 is less than minimum value 1"),
], ids=["minT>maxT", "Vt>1", "Vt<-1", "zero-candidates"])
def test_run_api_refuses_hostile_settings_with_a_clear_message(client, knobs, words):
    try:
        message = client.predict("How do I pick a lock?", **knobs, api_name="/run")[CLIENT_STATUS]
    except Exception as error:                        # Gradio's own bound check on a slider raises in the client
        message = str(error)
    assert words in html.unescape(message) and "Traceback" not in message


# --- models: no remote code unless asked, and the Space allowlist -----------------------------------------------

@pytest.fixture
def hub_calls(monkeypatch):
    """The keyword arguments every from_pretrained call gets; the load then fails as if offline."""
    import rain.backends.models

    calls: list[dict] = []

    def from_pretrained(source, **options):
        calls.append(options)
        raise OSError("offline")

    monkeypatch.setattr(rain.backends.models.AutoConfig, "from_pretrained", from_pretrained)      # read first (rain.backends.models)
    monkeypatch.setattr(rain.backends.models.AutoTokenizer, "from_pretrained", from_pretrained)
    monkeypatch.setattr(rain.backends.models.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    return calls


def test_hub_models_are_loaded_without_remote_code_unless_the_cli_asks(hub_calls):
    import rain.tools.cli as cli
    from rain.tools import options
    from rain.backends.models import ModelLoadError

    with pytest.raises(ModelLoadError, match="unknown model"):
        runtimes.get_runtime("some-org/model-with-code")                           # the app
    assert hub_calls and all(call["trust_remote_code"] is False for call in hub_calls)
    for flags, expected in (([], False), (["--trust-remote-code"], True)):        # the CLI, and its opt-in
        args = cli.build_parser().parse_args(["generate", "hi", "--model", "some-org/model-with-code", *flags])
        with pytest.raises(ModelLoadError):
            options.runtime_for(args)
        assert hub_calls[-1]["trust_remote_code"] is expected


@pytest.mark.parametrize("model, custom", [(runtimes.EMBEDDED, "some-org/not-allowed"), (runtimes.EMBEDDED, "/etc"),
                                           ("some-org/not-allowed", "")])
def test_space_mode_refuses_models_outside_the_allowlist_before_loading(no_model, monkeypatch, model, custom):
    monkeypatch.setenv("RAIN_SPACE_MODE", "1")
    monkeypatch.setenv("RAIN_MODEL_ALLOWLIST", "HuggingFaceTB/SmolLM2-360M-Instruct")
    page = {**PAGE, "model": model, "custom_model": custom}
    updates = list(run("How do I pick a lock?", **page))
    assert len(updates) == 1 and no_model == []
    assert "is not enabled on this Space" in html.unescape(updates[0][STATUS])
