"""The markdown block of the grounded-answering eval (evals/RESULTS.md, block "qa-grounded")."""
from __future__ import annotations


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def num(x: float | None, unit: str = "") -> str:
    return "–" if x is None else f"{x:,.0f}{unit}"


def share(x: dict) -> str:
    """"94.4 % (17/18, 95 % CI 74–99 %)"."""
    if not x["tasks"]:
        return "–"
    low, high = x["ci95"]
    return (f"{pct(x['abstained'])} ({x['count']}/{x['tasks']}, 95 % CI "
            f"{low * 100:.0f}–{high * 100:.0f} %)")


def _faith_rows(f: dict, scope: str) -> list[str]:
    rows = []
    for key, name in (("judge_draft", "draft (before verify), LLM judge"),
                      ("judge_answer", "answer (after verify), LLM judge"),
                      ("lexical_draft", "draft, lexical test (the verifier's own: \"any passage\" "
                                        "is what it kept; the answer scores 100 % by construction)")):
        x = f[key]
        rows.append(f"| {scope} | {name} | {x['sentences']} | {pct(x['supported'])} | "
                    f"{pct(x['supported_anywhere'])} | {x['citations']} | {pct(x['precision'])} | "
                    f"{pct(x['uncited'])} |")
    return rows


def faithfulness_table(s: dict) -> list[str]:
    return ["| tasks | text scored | sentences | faithfulness (supported by a cited passage) | "
            "supported by any passage given | citations | citation precision | "
            "sentences citing nothing |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
            *_faith_rows(s["faithfulness"], "all answered"),
            *_faith_rows(s["faithfulness_answerable"], "answerable only")]


def verifier_table(s: dict) -> list[str]:
    v, f = s["faithfulness"]["verifier_vs_judge"], s["faithfulness"]["fragments"]
    return ["The verifier's decisions on draft sentences against the judge (supported by any "
            f"passage given). Left out here and above: {f['drafted']} pieces without a word "
            f"(list numbers like \"1.\", bare [n]), {f['removed']} of them removed by the "
            "verifier.", "",
            "| verifier \\ judge | supported | unsupported |", "|---|---:|---:|",
            f"| kept | {v['kept_supported']} | {v['kept_unsupported']} |",
            f"| removed | {v['removed_supported']} | {v['removed_unsupported']} |"]


def headline(s: dict) -> list[str]:
    u, a = s["abstention_unanswerable"], s["abstention_answerable"]
    c = s["correctness"]
    t, tok = s["time_ms"], s["tokens"]
    return ["| figure | value |", "|---|---:|",
            f"| tasks (answerable + unanswerable) | {s['tasks']['answerable']} + "
            f"{s['tasks']['unanswerable']} |",
            f"| abstention accuracy, unanswerable (target ≥ 90 %) | {share(u)} "
            f"(model {pct(u['by_model'])}, verifier {pct(u['by_verifier'])}) |",
            f"| false abstention, answerable | {share(a)} "
            f"(model {pct(a['by_model'])}, verifier {pct(a['by_verifier'])}) |",
            f"| answer token F1 vs reference, answerable (abstentions included) | "
            f"{pct(c['answer']['f1'])} |",
            f"| answer ROUGE-L recall vs reference, answerable | {pct(c['answer']['rouge_l_recall'])} |",
            f"| draft token F1 / ROUGE-L recall, answerable | {pct(c['draft']['f1'])} / "
            f"{pct(c['draft']['rouge_l_recall'])} |",
            f"| answer F1 / ROUGE-L recall, answerable and answered ({c['answer_when_answered']['tasks']}) | "
            f"{pct(c['answer_when_answered']['f1'])} / {pct(c['answer_when_answered']['rouge_l_recall'])} |",
            f"| tasks answered with no sentence the judge supports: answerable / unanswerable | "
            f"{pct(s['answered_unsupported']['answerable'])} / "
            f"{pct(s['answered_unsupported']['unanswerable'])} |",
            f"| sentences the verifier removed | {s['removed_sentences']} |",
            f"| median per task: answer + verify / generation / first token / verify | "
            f"{num(t['task'], ' ms')} / {num(t['generate'], ' ms')} / {num(t['first_token'], ' ms')} / "
            f"{t['verify'] or 0:.1f} ms |",
            f"| median per task: judge (not part of the product) | {num(t['judge'], ' ms')} |",
            f"| answering + judging, summed over the tasks (models loaded once) | "
            f"{s['total_s'] / 60:.1f} min |",
            f"| median tokens per answer: prompt / completion | {num(tok['prompt'])} / "
            f"{num(tok['completion'])} |"]


def prototype_table(s: dict, p: dict) -> list[str]:
    """The key figures now and with the proposed rule, on the same drafts."""
    def row(name, get):
        return f"| {name} | {pct(get(s))} | {pct(get(p))} |"
    vj = lambda x: x["faithfulness"]["verifier_vs_judge"]   # noqa: E731
    return ["Prototype (evals/grounded_prototype.py): the verifier also removes sentences with "
            "no content word beyond the question's, applied to the same drafts:", "",
            "| figure | verifier now | with the rule |", "|---|---:|---:|",
            row("abstention accuracy, unanswerable", lambda x: x["abstention_unanswerable"]["abstained"]),
            row("false abstention, answerable", lambda x: x["abstention_answerable"]["abstained"]),
            row("answerable tasks answered with no supported sentence (judge)",
                lambda x: x["answered_unsupported"]["answerable"]),
            row("answer faithfulness (LLM judge)", lambda x: x["faithfulness"]["judge_answer"]["supported"]),
            row("answer token F1, answerable", lambda x: x["correctness"]["answer"]["f1"]),
            f"| kept but unsupported / removed but supported (sentences) | "
            f"{vj(s)['kept_unsupported']} / {vj(s)['removed_supported']} | "
            f"{vj(p)['kept_unsupported']} / {vj(p)['removed_supported']} |"]


def examples(records: list[dict], n: int = 4) -> list[str]:
    """A few failures to read: false abstentions, unanswerable tasks answered."""
    lines = []
    wrong = [r for r in records if r["label"] == "ANSWERABLE" and r["outcome"] == "abstained"][:n]
    wrong += [r for r in records if r["label"] == "UNANSWERABLE" and r["outcome"] != "abstained"][:n]
    for r in wrong:
        lines += [f"- `{r['task_id']}` ({r['label'].lower()}, {r['outcome']}): "
                  f"Q: {_short(r['question'])}",
                  f"  - draft: {_short(r['draft'], 300)}",
                  f"  - answer: {_short(r['answer'], 200)}"]
        lines += [f"  - removed: {_short(x, 200)}" for x in r["removed"][:2]]
    return lines


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= n else text[:n - 1] + "…"


def render(result: dict, command: str, date: str) -> str:
    s, cfg = result["summary"], result["settings"]
    a = cfg["answer"]
    return "\n".join([
        "## Grounded answering on MTRAG-UN (answer + verify operators)", "",
        f"Date: {date}  ", f"Command: `{command}`  ",
        f"Answer: `{a['model']}`, context_budget {a['context_budget']}, max_tokens "
        f"{a['max_tokens']}, temperature {a['temperature']} (topology/doc_qa.yaml); verify "
        f"threshold {cfg['verify']['threshold']}. Judge: `{cfg['judge']}` (evals/judge.py: yes/no "
        "entailment, JSON enum through the engine's grammar; how far to trust it: the "
        "qa-judge-check block, `python -m evals.judge_check`).  ",
        "Data: /work/shared/data/qa/mtrag_un/mtragun_reference.jsonl, stratified seeded sample. "
        "Answerable tasks get their gold passages; unanswerable tasks have none in the data, so "
        f"they get the {cfg['distractors']} gold passages of other tasks of their collection "
        "nearest the question (MiniLM): on topic, not answering.  ",
        "Correctness: token F1 (SQuAD normalisation) and ROUGE-L recall (LCS / reference "
        "tokens) of the citation-stripped text against `targets[0]`. Machine: 2 shared, busy "
        "cores; times are medians and noisy.", "",
        *headline(s), "", *faithfulness_table(s), "", *verifier_table(s), "",
        *(prototype_table(s, result["prototype"]) + [""] if "prototype" in result else []),
        "Failures to read (first few):", "", *examples(result["records"]), ""])
