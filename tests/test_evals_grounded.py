"""The grounded-answering eval's own arithmetic and bookkeeping, on hand-made cases: overlap
scores, claims, faithfulness, the summary, the sample, the judge's prompt and pair order.
No LLM: the judge is a fake that answers from a table."""
from __future__ import annotations

import json

import pytest

from evals import grounded_data as data
from evals import grounded_metrics as m
from evals.grounded import judged
from evals.grounded_prototype import informative, with_rule
from evals.grounded_report import render
from evals.judge import judge_messages, read_jsonl, verdict
from operators.qa.assemble import NOT_FOUND
from schemas.documents import Turn


def test_token_f1_ignores_case_punctuation_articles_and_citations():
    assert m.token_f1("The Eiffel Tower [1].", "eiffel tower") == 1.0
    assert m.token_f1("cats", "dogs") == 0.0
    # 2 common of 4 answer tokens and 2 reference tokens: P 0.5, R 1, F1 2/3
    assert m.token_f1("paris is in france", "paris france") == pytest.approx(2 / 3)


def test_token_f1_counts_repeats_once_per_occurrence():
    # "paris paris" vs "paris": 1 common, P 0.5, R 1
    assert m.token_f1("paris paris", "paris") == pytest.approx(2 / 3)


def test_rouge_l_recall_rewards_order_not_just_words():
    assert m.rouge_l_recall("one two three four", "one two three four") == 1.0
    assert m.rouge_l_recall("four three two one", "one two three four") == 0.25
    assert m.rouge_l_recall("one x two y", "one two three four") == 0.5
    assert m.rouge_l_recall("anything", "") == 0.0


def test_wilson_interval_matches_a_known_value_and_stays_in_range():
    low, high = m.wilson(17, 18)
    assert (round(low, 3), round(high, 3)) == (0.742, 0.990)
    assert m.wilson(0, 5)[0] == 0.0 and m.wilson(5, 5)[1] == 1.0
    assert m.wilson(0, 0) is None


def test_lcs_on_a_textbook_case():
    assert m.lcs(list("ABCBDAB"), list("BDCABA")) == 4


def test_draft_claims_keep_valid_citations_count_bad_ones_skip_not_found():
    text = ("Paris is in France [1]. It has 2 million people [3]. "
            "I could not find the mayor in the documents.")
    claims = m.draft_claims(text, n_passages=2)
    assert [c["sentence"] for c in claims] == ["Paris is in France.", "It has 2 million people."]
    assert [c["cited"] for c in claims] == [[0], []]
    assert [c["bad_marks"] for c in claims] == [0, 1]


def test_answer_claims_map_renumbered_citations_back_to_passages():
    ids = ["a#0", "b#0", "c#0"]
    claims = m.answer_claims("Paris is big [1]. Lyon is old [2].", {1: "c#0", 2: "a#0"}, ids)
    assert [c["cited"] for c in claims] == [[2], [0]]


def claim(judge, cited=None, any_=None, removed=False, lexical=()):
    cited = list(range(len(judge))) if cited is None else cited
    c = {"sentence": "s", "cited": cited, "judge": judge, "lexical": list(lexical),
         "removed": removed}
    if any_ is not None:
        c["judge_any"] = any_
    return c


def test_faithfulness_counts_uncited_sentences_as_unsupported():
    claims = [claim([True, False]), claim([False]), claim([], cited=[])]
    f = m.faithfulness(claims)
    assert f["sentences"] == 3
    assert f["supported"] == pytest.approx(1 / 3)
    assert f["citations"] == 3 and f["precision"] == pytest.approx(1 / 3)
    assert f["uncited"] == pytest.approx(1 / 3)
    assert f["supported_anywhere"] is None          # no judge_any recorded


def test_lexical_uses_the_threshold():
    claims = [claim([], cited=[0], lexical=[0.6]), claim([], cited=[0], lexical=[0.59])]
    assert m.lexical(claims)["supported"] == 0.5
    assert m.lexical(claims, threshold=0.5)["supported"] == 1.0
    # supported anywhere, lexically, is what the verifier kept, not what the judge said
    kept = [claim([], cited=[], any_=False, removed=False), claim([], cited=[], any_=True, removed=True)]
    assert m.lexical(kept)["supported_anywhere"] == 0.5
    assert m.lexical([claim([], cited=[], any_=True, removed=True)])["supported_anywhere"] == 0.0


def test_verifier_vs_judge_fills_the_four_cells():
    claims = [claim([], any_=True), claim([], any_=False), claim([], any_=True, removed=True),
              claim([], any_=True, removed=True)]
    assert m.verifier_vs_judge(claims) == {"kept_supported": 1, "kept_unsupported": 1,
                                           "removed_supported": 2, "removed_unsupported": 0}


def record(label, outcome, not_found=False, answer="x", target="x", claims=()):
    return {"task_id": "t", "question": "q", "label": label, "outcome": outcome, "draft_not_found": not_found, "draft": answer,
            "answer": answer, "target": target, "draft_claims": list(claims),
            "answer_claims": [], "removed": [], "ms": {"task": 10.0}, "tokens": {}}


def test_summary_splits_abstentions_by_who_decided():
    records = [record("UNANSWERABLE", "abstained", not_found=True),
               record("UNANSWERABLE", "abstained"),
               record("UNANSWERABLE", "answered"),
               record("UNANSWERABLE", "answered"),
               record("ANSWERABLE", "abstained"),
               record("ANSWERABLE", "answered", answer="paris", target="paris")]
    s = m.summarise(records)
    u, a = s["abstention_unanswerable"], s["abstention_answerable"]
    assert (u["abstained"], u["by_model"], u["by_verifier"]) == (0.5, 0.25, 0.25)
    assert (a["abstained"], a["by_model"], a["by_verifier"]) == (0.5, 0.0, 0.5)
    assert s["correctness"]["answer_when_answered"]["f1"] == 1.0
    # both unanswerable tasks answered, with no claim at all: nothing supported
    assert s["answered_unsupported"] == {"answerable": 0.5, "unanswerable": 0.5}
    assert s["time_ms"]["task"] == 10.0 and s["tokens"]["prompt"] is None
    text = render({"summary": s, "records": records, "settings": SETTINGS}, "cmd", "today")
    assert "| abstention accuracy, unanswerable (target ≥ 90 %) | 50.0 %" in text


SETTINGS = {"answer": {"model": "m", "context_budget": 900, "max_tokens": 220, "temperature": 0.0},
            "verify": {"threshold": 0.6}, "judge": "j", "distractors": 3}


def task(i, label, collection):
    return data.Task(task_id=f"{collection}-{i:03d}", label=label, collection=collection,
                     turns=[Turn(role="user", content="q")], contexts=[], target="")


@pytest.fixture
def tasks():
    """60 answerable (40 in A, 20 in B) and 30 unanswerable (all in A)."""
    out = [task(i, data.ANSWERABLE, "A") for i in range(40)]
    out += [task(i, data.ANSWERABLE, "B") for i in range(40, 60)]
    return out + [task(i, data.UNANSWERABLE, "A") for i in range(60, 90)]


def test_sample_alternates_labels_and_keeps_collections_in_proportion(tasks):
    picked = data.sample(tasks, 12, 12, seed=1)
    assert [t.label for t in picked[:4]] == [data.ANSWERABLE, data.UNANSWERABLE] * 2
    yes = [t for t in picked if t.label == data.ANSWERABLE]
    assert sum(t.collection == "A" for t in yes) == 8        # 2/3 of 12


def test_sample_is_seeded_and_nested(tasks):
    assert data.sample(tasks, 10, 10, seed=1) == data.sample(tasks, 10, 10, seed=1)
    assert data.sample(tasks, 10, 10, seed=1) != data.sample(tasks, 10, 10, seed=2)
    assert data.sample(tasks, 20, 20, seed=1)[:20] == data.sample(tasks, 10, 10, seed=1)


def test_sample_appends_the_rest_when_one_label_runs_out(tasks):
    picked = data.sample(tasks, 35, 40, seed=0)
    assert len(picked) == 35 + 30
    assert all(t.label == data.ANSWERABLE for t in picked[60:])


def test_candidates_use_the_last_turn_as_question_and_the_rest_as_history():
    t = data.Task(task_id="t", label=data.ANSWERABLE, collection="c", target="",
                  turns=[Turn(role="user", content="hi"), Turn(role="assistant", content="hello"),
                         Turn(role="user", content="and then?")],
                  contexts=[data.Context("d1", "some text", "Title")])
    c = data.candidates(t, data.gold_passages(t))
    assert c.query.query == "and then?" and [h.content for h in c.query.ask.history] == ["hi", "hello"]
    assert c.passages[0].chunk_id == "d1#0" and c.passages[0].end == len("some text")


def test_judge_prompt_puts_the_passage_before_the_claim():
    """Judgements of one passage must share a prompt prefix (the engine caches it)."""
    a, b = (judge_messages(s, "The passage.")[-1].content for s in ("claim one", "claim two"))
    head = a[:a.index("CLAIM")]
    assert b.startswith(head) and "The passage." in head
    assert verdict('"yes"') is True and verdict('"no"') is False


def test_read_jsonl_skips_a_line_cut_short(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text(json.dumps({"key": "a", "yes": True}) + '\n{"key": "b", "ye')
    assert read_jsonl(path) == [{"key": "a", "yes": True}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


class FakeJudge:
    """Supports a sentence when the passage contains it; records the order of questions."""

    def __init__(self):
        self.asked: list[tuple[str, str]] = []

    async def supports(self, sentence: str, passage: str) -> bool:
        self.asked.append((passage, sentence))
        return sentence in passage


class P:
    def __init__(self, text):
        self.text = text


async def test_judged_finds_support_in_uncited_passages_and_goes_passage_by_passage():
    passages = [P("alpha"), P("beta gamma"), P("delta")]
    drafted = [{"sentence": "gamma", "cited": [0]}, {"sentence": "beta", "cited": []},
               {"sentence": "omega", "cited": []}]
    answered = [{"sentence": "gamma", "cited": [1]}]
    judge = FakeJudge()
    await judged(judge, drafted, answered, passages)
    assert [c["judge"] for c in drafted] == [[False], [], []]
    assert [c["judge_any"] for c in drafted] == [True, True, False]
    assert answered[0]["judge"] == [True]
    # cited pairs first; then passage 0 for the two unresolved, passage 1, passage 2 for "omega"
    assert judge.asked == [("alpha", "gamma"), ("beta gamma", "gamma"), ("alpha", "beta"),
                           ("alpha", "omega"), ("beta gamma", "beta"), ("beta gamma", "omega"),
                           ("delta", "omega")]


def test_a_sentence_must_add_a_content_word_to_the_question():
    assert not informative("There should be one.", "there should be one")
    assert not informative("", "CDT Services")                 # "[1]" with its mark stripped
    assert not informative("The Wet ' n Wild park is still available.",
                           "is the Wet ' n Wild park still available?")
    assert informative("The name of our galaxy is the Milky Way.", "What is the name of our galaxy?")


def test_the_rule_drops_restatements_and_abstains_when_nothing_is_left():
    echo = {"sentence": "There should be one.", "cited": [0], "judge": [False], "removed": False}
    fact = {"sentence": "Each account has one owner.", "cited": [0], "judge": [True], "removed": False}
    base = {**record("UNANSWERABLE", "answered"), "question": "there should be one",
            "draft_claims": [echo, fact], "answer_claims": [echo, fact]}
    kept = with_rule(base)
    assert kept["outcome"] == "answered" and kept["answer_claims"] == [fact]
    assert [c["removed"] for c in kept["draft_claims"]] == [True, False]
    alone = with_rule({**base, "draft_claims": [echo], "answer_claims": [echo]})
    assert alone["outcome"] == "abstained" and alone["answer"].startswith(NOT_FOUND)
    assert alone["removed"][-1].startswith("There should be one. — restates")


def test_pieces_without_a_word_are_counted_apart_from_claims():
    words = {"sentence": "Bloodhound", "cited": [0], "judge": [True], "judge_any": True,
             "removed": False, "lexical": [1.0]}
    number = {"sentence": "1.", "cited": [], "judge": [], "judge_any": False, "removed": True}
    f = m.summarise([{**record("ANSWERABLE", "answered"), "draft_claims": [words, number],
                      "answer_claims": [words]}])["faithfulness"]
    assert f["judge_draft"]["sentences"] == 1 and f["judge_draft"]["supported_anywhere"] == 1.0
    assert f["fragments"] == {"drafted": 1, "removed": 1}
    assert f["verifier_vs_judge"]["removed_unsupported"] == 0
