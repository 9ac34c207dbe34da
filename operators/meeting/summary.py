"""Meeting summary: a Transcript → a MeetingSummary whose every item cites what was said.

    map     the transcript is cut into sections that fit the model's context (by tokens, at
            speaker-turn boundaries); per section one LLM call, held by a JSON-Schema grammar
            to items that cite line numbers of that section only ("[12] Ana: …")
    ground  an item whose cited segments do not lexically support it is removed (and named
            in `removed`); a citation one or two lines off is widened to the line that
            supports it; owner and due are kept only when the cited segments say them
    reduce  near-duplicate items of all sections merge (their citations join); a category
            longer than its cap is cut by an LLM call that may only pick item numbers, so the
            reduce can select and merge but never write a word of its own

Grounding comes before the reduce, so a merge never lends an unsupported text the citations
of a supported one, and no place under a cap goes to an item that would be removed.

A long meeting is read whole, section by section, instead of cut to the context: nothing is
dropped unread, and a small model summarising 1,500 tokens drifts less than one given 10,000.
Lines of bare fillers ("Yeah.", "Mm-hmm.") are left out of the prompts: they cost tokens and
can support no item.
"""
from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Iterable

import msgspec

from operators.generate.engine import Prompt
from operators.generate.shared import complete
from operators.qa.support import content_words, support
from schemas import ChatMessage, Transcript, TranscriptSegment
from schemas.meeting import ActionItem, MeetingSummary, SummaryItem, SummarySpan

CATEGORIES = ("key_points", "decisions", "action_items", "open_questions")
PER_SECTION = {"key_points": 5, "decisions": 3, "action_items": 3, "open_questions": 2}
FILLERS = frozenset("""yeah yes yep yup no nope okay ok mm mmm hmm hm uh um ah oh huh right
so well alright sure good great cool fine uh-huh mm-hmm okey oops wow""".split())
CITE_IN_TEXT = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")

# A worked example teaches a small model the four lists better than definitions, which it
# copies into its answer; as the system prompt, the engine's prefix cache evaluates it once.
MAP_SYSTEM = """You take the minutes of a meeting. Transcript lines are: [number] speaker: words.
Reply with four lists; each item gives the numbers of the lines it comes from, then one short
sentence in the speakers' own words. Use only what the lines say.

Example transcript:
[3] Ana: We need the report finished before the launch.
[4] Ben: I can write it by Friday.
[5] Ana: Good. And we keep the blue logo, everyone agreed.
[6] Ben: What about the budget for printing?

Example minutes:
{"key_points": [{"segments": [3], "text": "The report must be finished before the launch."}],
 "decisions": [{"segments": [5], "text": "They keep the blue logo."}],
 "action_items": [{"segments": [4], "text": "Ben will write the report.", "owner": "Ben", "due": "Friday"}],
 "open_questions": [{"segments": [6], "text": "The budget for printing is not settled."}]}"""
MAP_ASK = "Write the minutes of these lines."
SELECT_SYSTEM = (
    "You edit meeting minutes. You get numbered candidate {what}. Pick the numbers of the "
    "{cap} most important ones, those a participant would want to find in the minutes.")


class Caps(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key_points: int = 10
    decisions: int = 8
    action_items: int = 10
    open_questions: int = 6


class SummaryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    section_tokens: int = 1500      # transcript tokens per map step
    max_tokens: int = 700           # per LLM call; the grammar's item limits keep JSON within it
    temperature: float = 0.0
    min_support: float = 0.5        # share of an item's content words its cited segments hold
    reach: int = 2                  # lines around a citation that may complete its support
    cap: Caps = Caps()              # items per category in the final summary


class Cited(msgspec.Struct, frozen=True, kw_only=True):
    """An item as the model writes it: text and the line numbers it cites."""

    text: str
    segments: list[int]
    owner: str = ""
    due: str = ""


class Draft(msgspec.Struct, kw_only=True):
    """One section's items (or, after the reduce, the meeting's), by category."""

    key_points: list[Cited] = []
    decisions: list[Cited] = []
    action_items: list[Cited] = []
    open_questions: list[Cited] = []


TokenCount = Callable[[str], int]
Progress = Callable[[float, float, str], Awaitable[None]]


# ---- sections ----------------------------------------------------------------------------

def line(index: int, seg: TranscriptSegment) -> str:
    """A numbered transcript line. No time: the model never needs it (the item's span has
    it), and "00:03:14 " costs about a quarter of a meeting's prompt tokens."""
    return f"[{index}] {seg.speaker or 'Speaker'}: {' '.join(seg.text.split())}"


def is_filler(text: str) -> bool:
    words = re.findall(r"[a-z]+(?:-[a-z]+)?", text.lower())
    return all(w in FILLERS for w in words)


def turns(transcript: Transcript) -> list[list[int]]:
    """Indexes of the segments worth reading, grouped into runs of one speaker."""
    out: list[list[int]] = []
    last = None
    for i, seg in enumerate(transcript.segments):
        if is_filler(seg.text):
            continue
        if out and seg.speaker == last:
            out[-1].append(i)
        else:
            out.append([i])
        last = seg.speaker
    return out


def sections(transcript: Transcript, budget: int, count: TokenCount) -> list[list[int]]:
    """Segment indexes in sections of at most `budget` tokens of lines, cut between turns;
    only a turn longer than a whole section is cut inside, between its segments."""
    out: list[list[int]] = [[]]
    used = 0
    for turn in turns(transcript):
        costs = [count(line(i, transcript.segments[i])) for i in turn]
        if out[-1] and used + sum(costs) > budget:
            out.append([])
            used = 0
        for i, cost in zip(turn, costs):
            if out[-1] and used + cost > budget:
                out.append([])
                used = 0
            out[-1].append(i)
            used += cost
    return [s for s in out if s]


def token_counter(engine: Any) -> TokenCount:
    """Tokens of a text as the engine counts them, without its chat template's overhead."""
    empty = engine.count_tokens([ChatMessage(role="user", content="")])
    return lambda text: engine.count_tokens([ChatMessage(role="user", content=text)]) - empty


def section_budget(engine: Any, config: SummaryConfig) -> int:
    """config.section_tokens, or less where the prompt and the answer would not fit."""
    empty = Transcript(job_id="", segments=[])
    fixed = engine.count_tokens(map_prompt(empty, [], config).messages)
    return max(64, min(config.section_tokens, engine.context_tokens - config.max_tokens - fixed))


# ---- map ---------------------------------------------------------------------------------

def section_schema(indexes: list[int]) -> dict:
    """The map step's output: items that can only cite line numbers of this section."""
    cite = {"type": "array", "items": {"enum": sorted(indexes)}, "minItems": 1, "maxItems": 3}
    text = {"type": "string", "minLength": 8, "maxLength": 200}
    short = {"type": "string", "maxLength": 40}
    # Lines first, then the text: the model reads on from the lines it chose (its items
    # then walk through the section in order, and say more of what those lines say).
    plain = _object({"segments": cite, "text": text})
    action = _object({"segments": cite, "text": text, "owner": short, "due": short})
    # At least one key point: left free, small models answer every list with [].
    return _object({c: {"type": "array", "items": action if c == "action_items" else plain,
                        "minItems": int(c == "key_points"), "maxItems": PER_SECTION[c]}
                    for c in CATEGORIES})


def _object(properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def map_prompt(transcript: Transcript, indexes: list[int], config: SummaryConfig) -> Prompt:
    lines = "\n".join(line(i, transcript.segments[i]) for i in indexes)
    return Prompt(messages=[ChatMessage(role="system", content=MAP_SYSTEM),
                            ChatMessage(role="user", content=f"Transcript:\n{lines}\n\n{MAP_ASK}")],
                  json_schema=section_schema(indexes), max_tokens=config.max_tokens,
                  temperature=config.temperature)


async def map_section(engine: Any, transcript: Transcript, indexes: list[int],
                      config: SummaryConfig) -> tuple[Draft, str]:
    """One section's items, and a warning if the model's JSON was cut short or malformed."""
    text, last = await complete(engine, map_prompt(transcript, indexes, config))
    try:
        return msgspec.json.decode(text, type=Draft), ""
    except msgspec.DecodeError as e:
        why = "hit max_tokens" if last.finish_reason == "length" else str(e)
        return Draft(), f"section {indexes[0]}-{indexes[-1]}: no summary ({why})"


# ---- reduce ------------------------------------------------------------------------------

def merge(drafts: Iterable[Draft], overlap: float = 0.6) -> Draft:
    """All items of all sections, near-duplicates merged, each category in the order of its
    first citation. An item whose content words overlap one kept before by `overlap`
    (Jaccard) joins it: the kept text stays, the citations are united, nothing is rewritten.
    Jaccard, not containment: "The project manager will stand up." shares most of its few
    words with every other item about the project manager. Weightier categories are kept first (action item > decision > open question
    > key point), so a key point that repeats a decision joins the decision."""
    drafts, merged = list(drafts), Draft()
    weight = ("action_items", "decisions", "open_questions", "key_points")
    for category in weight:
        for draft in drafts:
            for item in getattr(draft, category):
                _add(merged, category, item, weight, overlap)
    for category in CATEGORIES:
        getattr(merged, category).sort(key=lambda c: c.segments[0])
    return merged


def _add(merged: Draft, category: str, item: Cited, weight: tuple, overlap: float) -> None:
    words = content_words(item.text)
    for other in weight[:weight.index(category) + 1]:
        kept = getattr(merged, other)
        for k, old in enumerate(kept):
            if _overlap(words, content_words(old.text)) >= overlap:
                segments = sorted(set(old.segments) | set(item.segments))
                kept[k] = msgspec.structs.replace(old, segments=segments,
                                                  owner=old.owner or item.owner,
                                                  due=old.due or item.due)
                return
    getattr(merged, category).append(item)


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def select_prompt(category: str, items: list[Cited], cap: int, config: SummaryConfig) -> Prompt:
    what = category.replace("_", " ")
    listing = "\n".join(f"{n}. {item.text}" for n, item in enumerate(items))
    schema = {"type": "array", "items": {"enum": list(range(len(items)))}, "minItems": 1,
              "maxItems": cap}
    return Prompt(messages=[ChatMessage(role="system", content=SELECT_SYSTEM.format(what=what, cap=cap)),
                            ChatMessage(role="user", content=f"Candidate {what}:\n{listing}")],
                  json_schema=schema, max_tokens=8 * cap + 16, temperature=config.temperature)


async def select(engine: Any, category: str, items: list[Cited], cap: int,
                 config: SummaryConfig) -> list[Cited]:
    """At most `cap` of `items`, picked by number by the model, in their own order."""
    if len(items) <= cap:
        return items
    text, _ = await complete(engine, select_prompt(category, items, cap, config))
    try:
        picked = sorted(set(msgspec.json.decode(text, type=list[int])))
    except msgspec.DecodeError:
        picked = list(range(cap))   # the grammar makes this a bug; the first ones still stand
    return [items[n] for n in picked if 0 <= n < len(items)][:cap]


# ---- ground ------------------------------------------------------------------------------

def passage(transcript: Transcript, indexes: list[int]) -> str:
    return "\n".join(f"{transcript.segments[i].speaker}: {transcript.segments[i].text}"
                     for i in indexes)


def span(transcript: Transcript, indexes: list[int]) -> SummarySpan:
    """The cited segments, sorted, and the time from the first's start to the last's end."""
    indexes = sorted(set(indexes))
    segs = [transcript.segments[i] for i in indexes]
    start = max(0.0, min(s.start for s in segs))
    return SummarySpan(start_s=start, end_s=max(start, max(s.end for s in segs)),
                       segments=indexes)


def said(words: str, text: str) -> bool:
    """Every content word of `words` is in `text` (owner and due must be heard, not guessed)."""
    wanted = content_words(words)
    return bool(wanted) and wanted <= content_words(text)


class Grounding(msgspec.Struct, kw_only=True):
    draft: Draft
    removed: list[str] = []     # each removed item, with why
    widened: int = 0            # items that cited a line next to the one that supports them


def widen(transcript: Transcript, text: str, cited: list[int], min_support: float,
          reach: int) -> list[int]:
    """`cited` plus, while it falls short of support, the line within `reach` of a cited one
    that holds most of the item's missing words. Small models often cite a line or two off
    (the question instead of its answer); the item keeps only lines that add support."""
    near = {j for i in cited for j in range(i - reach, i + reach + 1)
            if 0 <= j < len(transcript.segments)} - set(cited)
    chosen, wanted = list(cited), content_words(text)
    while support(text, passage(transcript, chosen)) < min_support and near:
        have = content_words(passage(transcript, chosen))
        gain, best = max((len((wanted - have) & content_words(transcript.segments[j].text)), j)
                         for j in sorted(near))
        if gain == 0:
            break
        chosen.append(best)
        near.discard(best)
    return sorted(chosen)


def ground_item(transcript: Transcript, item: Cited, min_support: float,
                reach: int = 2) -> tuple[Cited | None, str]:
    """The item citing real segments that support it, or None and why it goes."""
    text = " ".join(CITE_IN_TEXT.sub("", item.text).split())
    cited = sorted({i for i in item.segments if 0 <= i < len(transcript.segments)})
    if not content_words(text):     # support() would call a sentence of no content supported
        return None, f"{text or '(empty)'} — says nothing"
    if not cited:
        return None, f"{text} — cites no segment of the transcript"
    cited = widen(transcript, text, cited, min_support, reach)
    heard = passage(transcript, cited)
    score = support(text, heard)
    if score < min_support:
        return None, f"{text} — segments {cited} support {score:.0%} of its words"
    owner = item.owner.strip() if said(item.owner, heard) else ""
    due = item.due.strip() if said(item.due, heard) else ""
    return Cited(text=text, segments=cited, owner=owner, due=due), ""


def ground(transcript: Transcript, draft: Draft, min_support: float, reach: int = 2) -> Grounding:
    """Only the supported items, citing real segments."""
    out = Grounding(draft=Draft())
    for category in CATEGORIES:
        kept = []
        for item in getattr(draft, category):
            good, why = ground_item(transcript, item, min_support, reach)
            if good is None:
                out.removed.append(why)
                continue
            out.widened += len(good.segments) > len(set(item.segments))
            kept.append(good)
        setattr(out.draft, category, kept)
    return out


def to_summary(transcript: Transcript, draft: Draft, **fields: Any) -> MeetingSummary:
    """The MeetingSummary of a grounded draft, decoded back from its JSON: what leaves here
    has passed every constraint of the published schema."""
    def plain(items: list[Cited]) -> list[SummaryItem]:
        return [SummaryItem(text=c.text, span=span(transcript, c.segments)) for c in items]
    actions = [ActionItem(text=c.text, owner=c.owner, due=c.due, span=span(transcript, c.segments))
               for c in draft.action_items]
    summary = MeetingSummary(job_id=transcript.job_id, key_points=plain(draft.key_points),
                             action_items=actions, decisions=plain(draft.decisions),
                             open_questions=plain(draft.open_questions), **fields)
    return msgspec.json.decode(msgspec.json.encode(summary), type=MeetingSummary)


# ---- the whole -------------------------------------------------------------------------------

async def map_sections(transcript: Transcript, engine: Any, config: SummaryConfig,
                       progress: Progress | None = None) -> tuple[list[list[int]], list[Draft], list[str]]:
    """The sections, each one's draft, and warnings for sections that yielded nothing."""
    if hasattr(engine, "load"):     # counting tokens needs the model's vocabulary
        await engine.load()
    parts = sections(transcript, section_budget(engine, config), token_counter(engine))
    drafts, warnings = [], []
    for n, indexes in enumerate(parts):
        draft, warning = await map_section(engine, transcript, indexes, config)
        drafts.append(draft)
        warnings += [warning] if warning else []
        if progress is not None:
            await progress(n + 1, len(parts) + 1, f"summarised section {n + 1} of {len(parts)}")
    return parts, drafts, warnings


async def reduce(transcript: Transcript, engine: Any, drafts: list[Draft],
                 config: SummaryConfig) -> Grounding:
    """Ground each section's items, merge them, cut each category to its cap."""
    grounded = [ground(transcript, d, config.min_support, config.reach) for d in drafts]
    merged = merge(g.draft for g in grounded)
    for category in CATEGORIES:
        cap = getattr(config.cap, category)
        setattr(merged, category, await select(engine, category, getattr(merged, category),
                                               cap, config))
    return Grounding(draft=merged, removed=[why for g in grounded for why in g.removed],
                     widened=sum(g.widened for g in grounded))


async def summarize(transcript: Transcript, engine: Any, config: SummaryConfig = SummaryConfig(),
                    progress: Progress | None = None) -> MeetingSummary:
    """Map over the sections, ground, reduce. `engine` is an LlmEngine (shared_llama's)."""
    parts, drafts, warnings = await map_sections(transcript, engine, config, progress)
    final = await reduce(transcript, engine, drafts, config)
    return to_summary(transcript, final.draft, model=engine.model, sections=len(parts),
                      removed=final.removed, warnings=warnings)
