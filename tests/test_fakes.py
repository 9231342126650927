"""The fakes are held to the real interfaces, so a test on them checks the code, not a stand-in of it."""
from __future__ import annotations

import inspect

import pytest

from fakes import FakeCodec, FakeEmbedder, FakeJudge, FakeLM, FakeRuntime
from rain.core.lm import Embedder, Judge, LanguageModel, TextCodec
from rain.backends.torch_runtime import Runtime


def parameters(function) -> list[tuple]:
    """Names, kinds and defaults (what a caller relies on; annotations name the fake's own types)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def public_methods(cls) -> dict[str, object]:
    return {name: member for name, member in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


def test_the_fake_runtime_is_runtime_with_only_model_bound_methods_replaced():
    """Every public method keeps Runtime's signature; what the fake replaces is only what needs weights, and the
    session-level logic (search, vanilla_stream, resolved, judge) is Runtime's own."""
    real, fake = public_methods(Runtime), public_methods(FakeRuntime)
    assert real.keys() <= fake.keys()
    for name, method in real.items():
        assert parameters(fake[name]) == parameters(method), name
    inherited = {name for name in real if fake[name] is real[name]}
    assert {"vanilla_stream", "resolved", "judge"} <= inherited
    assert FakeRuntime.search.__code__.co_names.count("super") == 1       # records the search, then Runtime's
    replaced = {name for name in real if name not in inherited}
    assert replaced <= {"engine", "conversation", "judge_scale", "weights_fingerprint", "search", "engine_stats",
                        "record", "engine_choice", "judge_prefix"}


@pytest.mark.parametrize("fake, protocol", [(FakeLM, LanguageModel), (FakeJudge, Judge), (FakeCodec, TextCodec),
                                            (FakeEmbedder, Embedder)])
def test_the_fake_backends_have_the_protocols_methods_and_attributes(fake, protocol):
    for name, method in public_methods(protocol).items():
        assert name in dir(fake), name
        assert parameters(getattr(fake, name)) == parameters(method), name
    for name in getattr(protocol, "__annotations__", {}):
        assert hasattr(fake, name) or name in getattr(fake, "__annotations__", {}) or name in dir(fake()), name
