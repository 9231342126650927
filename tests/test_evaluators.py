"""Evaluators (rain/core/evaluator.py, rain/backends/evaluators.py): the same search with another judge.

Each kind on small cases (VADER through the search's judge interface, a tiny random-weight classifier and causal
LM built from transformers configs with the embedded tokenizer), the tree JSON's `judge.evaluator`, replay and
fork keeping it, caches that never mix two evaluators' scores, and bad specs refused in one line.
"""
from __future__ import annotations

import json

import pytest
import torch

from rain.backends.evaluators import ClassifierScorer, ModelEvaluator, TextEvaluator, load_evaluator
from rain.core.config import ConfigError, RainConfig, preset
from rain.core.evaluator import EvaluatorError, parse_evaluator
from rain.core.export import load
from rain.core.judge import SelfJudge
from rain.core.prompts import Conversation
from rain.core.score_judge import ScoreJudge
from rain.core.search import Backends, Search
from rain.tools import cli, options
from rain.tools import evaluation as ev
from fakes import FakeCodec, FakeEmbedder, FakeLM

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_llama_config(vocab_size: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                       initializer_range=0.2, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def model_dir(embedded_tokenizer, tmp_path_factory):
    """A random-weight 1-layer Llama causal LM folder with the embedded tokenizer (and its chat template)."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("tiny-lm")
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(tiny_llama_config(len(embedded_tokenizer))).save_pretrained(folder)
    embedded_tokenizer.save_pretrained(folder)
    return folder


def classifier_folder(tokenizer, folder, id2label):
    from transformers import LlamaForSequenceClassification

    config = tiny_llama_config(len(tokenizer))
    config.num_labels, config.id2label = len(id2label), id2label
    config.label2id = {name: i for i, name in id2label.items()}
    config.pad_token_id = tokenizer.pad_token_id or 0
    torch.manual_seed(2)
    LlamaForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier_dir(embedded_tokenizer, tmp_path_factory):
    return classifier_folder(embedded_tokenizer, tmp_path_factory.mktemp("tiny-cls"), {0: "NEGATIVE", 1: "POSITIVE"})


def fake_search(judge, config: RainConfig) -> Search:
    codec = FakeCodec()
    conversation = Conversation("the door", tuple(codec.encode(" the door")), "r", frozenset({0}), None, "chat")
    return Search(Backends(FakeLM(), codec, judge, FakeEmbedder()), conversation, config)


# --- specs --------------------------------------------------------------------------------------------------

def test_spec_parsing_and_the_config_field():
    assert parse_evaluator("model:some/dir").kind == "model" and parse_evaluator("model:some/dir").target == "some/dir"
    assert str(parse_evaluator("classifier:x")) == "classifier:x"
    assert RainConfig().evaluator == "self"
    assert preset("imdb", evaluator="vader").evaluator == "vader"
    for bad, words in [("nosuch", "unknown evaluator 'nosuch'"), ("model:", "needs what it names"),
                       ("vader:x", "takes no"), ("", "unknown evaluator")]:
        with pytest.raises(ConfigError, match=words):
            preset("imdb", evaluator=bad)
        with pytest.raises(EvaluatorError, match=words):
            parse_evaluator(bad)


# --- vader ----------------------------------------------------------------------------------------------------

def test_vader_scores_through_the_search_judge_interface():
    """Every evaluate event of a search against VADER carries VADER's compound of question + answer, exactly."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    judge = load_evaluator("vader", preset("imdb")).judge(preset("imdb"))
    assert isinstance(judge, ScoreJudge) and judge.format == "vader"
    known = judge.evaluate("This movie was a waste of", " time. Terrible acting.")
    assert known.score == SentimentIntensityAnalyzer().polarity_scores(
        "This movie was a waste of time. Terrible acting.")["compound"] == -0.7096
    assert known.parts == (known.score,) and known.orders == ()
    analyzer = SentimentIntensityAnalyzer()
    search = fake_search(judge, preset("imdb", sims_per_move=3, max_moves=3, evaluator="vader"))
    scores = [(e.answer, e.score) for e in search.run() if e.type == "evaluate"]
    assert scores and all(score == analyzer.polarity_scores("the door" + answer)["compound"]
                          for answer, score in scores)


def test_text_judge_clips_to_the_search_range():
    class Loud:
        name = "loud"

        def score(self, question, answer):
            return 3.0

    assert ScoreJudge.of("python", "harm", Loud()).evaluate("q", "a").score == 1.0


# --- a classifier ------------------------------------------------------------------------------------------------

def test_tiny_classifier_evaluator_reads_its_positive_label(classifier_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    evaluator = load_evaluator(f"classifier:{classifier_dir}", preset("imdb"), device="cpu")
    assert isinstance(evaluator, TextEvaluator) and isinstance(evaluator.scorer, ClassifierScorer)
    judge = evaluator.judge(preset("imdb"))
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
    with torch.no_grad():
        logits = model(**tokenizer(" a fine film", return_tensors="pt")).logits[0]
    expected = 2 * float(torch.softmax(logits, -1)[1]) - 1            # label 1 is POSITIVE
    assert judge.evaluate("Opening", " a fine film").score == pytest.approx(expected, abs=1e-6)
    assert judge.description.format == "classifier" and "P(POSITIVE)" in judge.description.score_rule


def test_classifier_without_usable_labels_is_refused(embedded_tokenizer, tmp_path):
    folder = classifier_folder(embedded_tokenizer, tmp_path / "c", {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(EvaluatorError, match="which classifier label means safe"):
        load_evaluator(f"classifier:{folder}", preset("imdb"), device="cpu")


# --- another causal LM --------------------------------------------------------------------------------------------

def test_model_evaluator_asks_the_judge_question_on_its_own_engine(model_dir, embedded_tokenizer):
    """Its score is the SelfJudge's on that model, computed here independently on the reference engine."""
    from transformers import AutoModelForCausalLM

    from rain.backends.engine import ReferenceEngine
    from rain.backends.models import HFCodec

    config = preset("imdb")                                           # ab_soft, sentiment: no scale
    evaluator = load_evaluator(f"model:{model_dir}", config, device="cpu")
    assert isinstance(evaluator, ModelEvaluator)
    judge = evaluator.judge(config)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    reference = SelfJudge(ReferenceEngine(model), HFCodec(embedded_tokenizer, model), embedded_tokenizer, "ab_soft",
                          "sentiment")
    got, want = judge.evaluate("The film was", " dull."), reference.evaluate("The film was", " dull.")
    assert got.score == pytest.approx(want.score, abs=1e-5)
    assert [sorted(o) for o in got.orders] == [["A", "B", "C"]] * 2
    assert judge.lm.stats.forward_calls > 0                           # its own engine did the work


def test_model_evaluator_auto_scale_is_its_own_and_stored_apart(model_dir, tmp_path, monkeypatch):
    """yesno_logit "auto": calibrated on the evaluator's gaps, stored under a key the self-judge never uses."""
    from rain.backends import calibration
    from rain.backends.torch_runtime import Runtime

    keys = []

    def spy(key, compute, root=None):
        keys.append(key)
        return compute()

    monkeypatch.setattr(calibration, "stored_scale", spy)            # both judges resolve through calibration
    config = preset("hh", judge_format="yesno_logit")
    evaluator = load_evaluator(f"model:{model_dir}", config, device="cpu")
    scale = evaluator.scale(config)
    assert scale.source == "auto" and evaluator.scale(config) is scale          # calibrated once
    assert scale.value == calibration.calibrate(evaluator._judge(evaluator.engine(config), config, 1.0)).value
    runtime = Runtime(None, loaded=(evaluator.model, evaluator.tokenizer), embedder=FakeEmbedder())
    own = runtime.judge_scale(config)                                  # the same weights as the generation model
    assert own.value == pytest.approx(scale.value) and len(keys) == 2 and keys[0] != keys[1]
    runtime.use_evaluator(evaluator)
    assert runtime.resolved(config.replace(evaluator=evaluator.spec)).judge_logit_scale == scale.value


def test_tokenizer_that_cannot_spell_the_labels_is_refused(tmp_path):
    """A character-level tokenizer spells "Yes" in three tokens: the yes/no judge cannot read it."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    letters = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,?!:'()<>|_\n"))
    vocab = {"<unk>": 0, "<eos>": 1, **{ch: i + 2 for i, ch in enumerate(letters)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>")
    tokenizer.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}<|assistant|>"
    folder = tmp_path / "chars"
    AutoModelForCausalLM.from_config(tiny_llama_config(len(vocab))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with pytest.raises(EvaluatorError, match=r"judge label 'Yes' is 3 tokens"):
        load_evaluator(f"model:{folder}", preset("hh", judge_format="yesno_logit"), device="cpu")


# --- any object from Python ----------------------------------------------------------------------------------------

def test_a_python_judge_object_is_served_and_recorded(model_dir, embedded_tokenizer):
    from transformers import AutoModelForCausalLM

    from rain.backends.torch_runtime import Runtime
    from rain.core.lm import Evaluation
    from rain.runs.session import RunRequest, final_record, run_session

    class Length:
        format = "length"

        def evaluate(self, question, answer):
            return Evaluation(score=min(1.0, len(answer) / 100))

        def prefetch(self, question, answer):
            pass

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    runtime = Runtime(None, loaded=(model, embedded_tokenizer), embedder=FakeEmbedder())
    spec = runtime.use_judge(Length())
    assert spec == "python:Length"
    config = preset("hh", sims_per_move=2, max_moves=2, max_new_tokens=6, rollout_max_tokens=4,
                    judge_format="ab_soft", evaluator=spec)
    record = final_record(run_session(runtime, RunRequest("Hi", config, vanilla=False)))
    scores = [(e.answer, e.score) for e in record.events if e.type == "evaluate"]
    assert scores and all(score == min(1.0, len(answer) / 100) for answer, score in scores)
    assert record.judge["evaluator"]["spec"] == "python:Length" and record.config["evaluator"] == spec


# --- caches -------------------------------------------------------------------------------------------------------

def test_eval_folders_and_lanes_never_mix_evaluators(tmp_path):
    ev.check_setup(tmp_path, {"config": preset("imdb").to_dict()})
    (tmp_path / ev.RESULTS_FILE).write_text("")
    with pytest.raises(ev.EvalError, match="evaluator: 'self' -> 'vader'"):
        ev.check_setup(tmp_path, {"config": preset("imdb", evaluator="vader").to_dict()})
    assert ev.parse_methods("vanilla,rain,rain@vader,bon@vader") == ["vanilla", "rain", "rain@vader", "bon@vader"]
    assert ev.lane_config(preset("imdb"), "rain@vader").evaluator == "vader"
    assert ev.lane_config(preset("imdb"), "rain").evaluator == "self"
    done = [ev.Result("1", "rain", "-", "p", "a", 0.0, False, 0.0, 0, 0, 0)]
    assert ev.pending([ev.EvalPrompt("1", "p")], ["rain", "rain@vader"], done) == [(ev.EvalPrompt("1", "p"), "rain@vader")]
    for bad, words in [("vanilla@vader", "takes no @evaluator"), ("rain@nosuch", "unknown evaluator"),
                       ("nosuch@vader", "unknown method")]:
        with pytest.raises(ev.EvalError, match=words):
            ev.parse_methods(bad)


def test_runtime_keeps_one_loaded_evaluator_per_spec(model_dir, embedded_tokenizer):
    from transformers import AutoModelForCausalLM

    from rain.backends.torch_runtime import Runtime

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    runtime = Runtime(None, loaded=(model, embedded_tokenizer), embedder=FakeEmbedder())
    vader, own = preset("imdb", evaluator="vader"), preset("imdb")
    lm = runtime.engine(own)
    assert isinstance(runtime.judge(lm, vader), ScoreJudge)
    assert isinstance(runtime.judge(lm, own), SelfJudge)
    assert runtime.evaluator(vader) is runtime.evaluator(vader) and runtime.evaluator(own) is None


# --- the command line ------------------------------------------------------------------------------------------------

def test_generate_with_a_model_evaluator_records_replays_and_forks(model_dir, tmp_path, capsys):
    out, forked = tmp_path / "t.json", tmp_path / "f.json"
    spec = f"model:{model_dir}"
    common = ["--device", "cpu", "--dtype", "float32"]
    assert cli.main(["generate", "Hi", "--model", str(model_dir), *common, "--evaluator", spec, "--sims-per-move", "2",
                     "--max-moves", "2", "--max-new-tokens", "6", "--knob", "rollout_max_tokens=4",
                     "--judge-format", "ab_soft", "--json", str(out)]) == 0
    record = load(out)
    assert record.config["evaluator"] == spec
    assert record.judge["evaluator"]["spec"] == spec and record.judge["evaluator"]["kind"] == "model"
    assert record.judge["format"] == "ab_soft" and len(record.judge["templates"]) == 2
    capsys.readouterr()
    assert cli.main(["replay", str(out)]) == 0
    assert f"evaluator: {spec}" in capsys.readouterr().out
    assert cli.main(["fork", str(out), "--at", "0", *common, "--json", str(forked)]) == 0
    assert load(forked).judge["evaluator"]["spec"] == spec and load(forked).config["evaluator"] == spec


@pytest.mark.parametrize("spec, words", [
    ("nosuch", "unknown evaluator 'nosuch'"),
    ("model:", "needs what it names"),
    ("model:./no/such/folder", "no such folder"),
    ("classifier:./no/such/folder", "no such folder"),
    ("model:no-such-org/no-such-model", "not found on the Hugging Face hub (offline?)"),
])
def test_bad_specs_get_one_line_before_the_model_loads(spec, words, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the generation model was loaded")

    monkeypatch.setattr(options, "load_runtime", never)
    for command in (["generate", "Hi"], ["eval", "in.jsonl", "--out", "o"], ["sweep", "in.jsonl", "--out", "o"],
                    ["run", "in.jsonl", "--out", "o.jsonl"]):
        if command[0] != "generate":
            continue                                                   # the same option, parsed by config_from
        assert cli.main([*command, "--evaluator", spec]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]


def test_bad_classifier_and_labels_spec_from_the_cli(embedded_tokenizer, tmp_path, monkeypatch, capsys):
    folder = classifier_folder(embedded_tokenizer, tmp_path / "c", {0: "LABEL_0", 1: "LABEL_1"})
    capsys.readouterr()                                                 # the folder's own writing progress
    monkeypatch.setattr(options, "load_runtime", lambda *a, **k: pytest.fail("the generation model was loaded"))
    assert cli.main(["generate", "Hi", "--evaluator", f"classifier:{folder}", "--device", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Loading weights")]
    assert len(err) == 1 and err[0].startswith("error: cannot tell which classifier label")     # (transformers' bar aside)


def test_eval_lanes_with_two_judges(tmp_path, monkeypatch):
    """rain@vader and bon@vader beside the self lanes, each answer scored by VADER and AFINN, in one summary."""
    from rain.tools.eval_summary import summarise
    from rain.tools.sentiment import AfinnScorer

    results = []
    for i, (method, vader, afinn, own) in enumerate([("vanilla", -0.5, -0.2, 0.1), ("rain", 0.1, 0.0, 0.3),
                                                     ("rain@vader", 0.6, 0.4, 0.0)]):
        results.append(ev.Result("1", method, "-", "p", f"a{i}", own, False, 1.0, 2, 3, 4, vader,
                                 judges={"vaderSentiment 3.3.2 (compound of the whole review)": vader, "afinn": afinn}))
    summary = summarise(results, ["vanilla", "rain", "rain@vader"], "vader", "",
                        ["vaderSentiment 3.3.2 (compound of the whole review)", "afinn"])
    rows = {(j.method, j.judge): j for j in summary.judges}
    assert rows[("rain@vader", "afinn")].good_share == 1.0 and rows[("rain", "afinn")].good_share == 0.0
    assert rows[("rain", "vaderSentiment 3.3.2 (compound of the whole review)")].good_share == 1.0   # 0.1 >= 0.05
    assert rows[("rain@vader", "afinn")].over_vanilla.wins == 1
    assert rows[("rain@vader", "self")].over_vanilla.losses == 1
    assert AfinnScorer().score("A good", " and terrible film") == pytest.approx((3 - 3) / 10)
    assert AfinnScorer().score("Great", " fun") == pytest.approx((3 + 4) / 10)
    assert json.dumps(summary.judges[0].mean_score)


def test_a_text_judged_run_is_a_valid_tree_file(tmp_path):
    """A VADER-judged search's record (evaluate events with no option orders) passes the schema and replays."""
    from rain.backends.evaluators import judge_record
    from rain.core.export import RunRecord, loads, dumps, nodes_of
    from rain.core.replay import rebuild

    config = preset("imdb", sims_per_move=2, max_moves=2, evaluator="vader")
    judge = load_evaluator("vader", config).judge(config)
    search = fake_search(judge, config)
    events = list(search.run())
    record = RunRecord("the door", config.to_dict(), {"name": "fake"}, judge_record(judge, config), events,
                       nodes_of(rebuild(events)), search.answer())
    back = loads(dumps(record))
    assert back.judge["evaluator"] == {"spec": "vader", "kind": "vader",
                                       "scores": "vaderSentiment 3.3.2 (compound of the whole review)",
                                       "scale": "the scorer's own score, in [-1, 1]"}
    assert [e.score for e in back.events if e.type == "evaluate"] == [e.score for e in events if e.type == "evaluate"]
