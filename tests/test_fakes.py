"""The fakes are held to the real interfaces, so a test on them checks the code, not a stand-in of it."""
from __future__ import annotations

import inspect

import pytest

from fakes import FakeCodec, FakeEmbedder, FakeJudge, FakeLM, FakeRuntime
from rain.core.lm import Embedder, Judge, LanguageModel, TextCodec
from rain.backends.base_runtime import BaseRuntime
from rain.backends.torch_runtime import Runtime
from rain.backends.vllm_runtime import VllmRuntime
from rain.runs.runtimes import Runtime as RuntimeProtocol


def parameters(function) -> list[tuple]:
    """Names, kinds and defaults (what a caller relies on; annotations name the fake's own types)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def public_methods(cls) -> dict[str, object]:
    return {name: member for name, member in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


def test_the_runtimes_are_siblings_that_implement_the_protocol():
    """The torch runtime, the vLLM runtime and the fake each implement every method of the `Runtime` protocol the
    session takes (its parameters first, in order, with its defaults; a runtime may add optional ones), and each is
    a BaseRuntime, none another's subclass."""
    runtimes = (Runtime, VllmRuntime, FakeRuntime)
    for cls in runtimes:
        assert BaseRuntime in cls.__mro__, cls
        assert not any(other in cls.__mro__ for other in runtimes if other is not cls), cls
        for name, method in public_methods(RuntimeProtocol).items():
            wanted, found = parameters(method), parameters(getattr(cls, name))
            assert found[:len(wanted)] == wanted, (cls.__name__, name)
            assert all(default is not inspect.Parameter.empty for _, _, default in found[len(wanted):]), name


def test_the_fake_replaces_only_what_needs_a_model():
    """The session-level logic (search, vanilla_stream, resolved, judge, the evaluator) is BaseRuntime's own."""
    replaced = {name for name, method in public_methods(FakeRuntime).items()
                if public_methods(BaseRuntime).get(name) is not method}
    assert replaced == {"engine", "conversation", "judge_scale", "weights_fingerprint", "search", "engine_stats",
                        "model_info", "judge_info"}
    assert FakeRuntime.search.__code__.co_names.count("super") == 1       # records the search, then BaseRuntime's


@pytest.mark.parametrize("fake, protocol", [(FakeLM, LanguageModel), (FakeJudge, Judge), (FakeCodec, TextCodec),
                                            (FakeEmbedder, Embedder)])
def test_the_fake_backends_have_the_protocols_methods_and_attributes(fake, protocol):
    for name, method in public_methods(protocol).items():
        assert name in dir(fake), name
        assert parameters(getattr(fake, name)) == parameters(method), name
    for name in getattr(protocol, "__annotations__", {}):
        assert hasattr(fake, name) or name in getattr(fake, "__annotations__", {}) or name in dir(fake()), name
