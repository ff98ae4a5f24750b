"""The parts of a task in the order they happen: "survey the dam from above, then inspect its gates" is two.

A team needs a task with parts that different robots do; the Selector scores each part (see
`ember_core.teams`). The split is by rule, for the English of fleet operators:

- sentences (". ", "; ") and the items of a list told in one line (" - ", "1) ", "(2) ") are parts in
  the order written, except a statement of one part that only informs
  ("The harbour master says one of them is flickering.", "We heard tapping under the slab."; a work
  ticket's label such as "Port ops:" is no statement), which is no step, and a sentence opened by "before
  that" or "but first" or ending with "first", which happens before the sentence written before it (then
  a step, even if it reads like a statement);
- inside a sentence, sequence words split it: "then", "and then", "after that", "afterwards", "thereafter",
  "and later", "followed by", "finally", "and (from, down...) there", "once ... ,", "as soon as", "before" ("prior
  to"), "after", "after which", "after this", ", but first", ", but before that", "not ... until" ("nothing",
  "nobody" negate too); a sentence without any of them splits at "and" followed by a verb ("map the reef and
  send the ROV down"), unless what comes before only gets to the job ("go in through the hatch and find the plug"). "then" inside one clause is
  an adverb ("the supplies are then driven down the road"): the later step starts with that clause
  ("..., where it is then fitted"), or there is no split;
- "A before B", "After A, B", "A, after which B" and "A, after this B" keep the written order; "Before A, B", "A after B",
  "A, but first B", "A, but before that B" and "not A until B" swap it, so the parts follow time, not
  mention ("Before the divers go in, map the site from the air": map first);
- a split at "before", "after", "once", "but first", "until" or "and" is kept only when both sides have a
  verb ("inspect the roof after the storm" stays whole), and one at "until" only after a negation ("hover
  above him until the boat arrives" stays whole: the boat is not a job); the other sequence words always
  split (unless an adverb, above). The side such a word opens needs a verb of its own ("need to" carries
  one), before its first "and" or comma unless it has an auxiliary: one after "to" or an article is not
  ("search the ruins after an earthquake to find survivors", "inspect the fields after a harvest", "after
  the hailstorm and report the posts" stay whole), a leading "once it's up," with no action verb stays with
  its clause, and so does what the operator does ("before we light the burner, check the flue" is one
  part).
"""
from __future__ import annotations

import re

from ember_core.limits import MAX_TASK_PARTS

# Verbs an operator's instruction starts a part with; a part without any of them is not split off.
ACTION_VERBS = frozenset((
    "inspect", "examine", "check", "survey", "scan", "map", "explore", "monitor", "watch", "patrol",
    "search", "rescue", "locate", "find", "detect", "measure", "sample", "collect", "film", "photograph",
    "transport", "carry", "move", "deliver", "bring", "fetch", "retrieve", "lift", "load", "unload",
    "sort", "stack", "pick", "place", "assemble", "install", "repair", "fix", "maintain", "clean",
    "wash", "paint", "weld", "open", "close", "operate", "assist", "help", "guide", "greet", "serve",
    "cook", "navigate", "climb", "cross", "enter", "reach", "spray", "water", "plant", "harvest",
    "feed", "deploy", "tow", "clear", "dig", "secure", "test", "record", "track", "escort", "send",
    "have", "use", "let", "get", "take", "go", "drive", "fly", "swim", "dive", "walk", "drop", "hand",
    "put", "mount", "replace", "remove", "look", "ferry", "shuttle", "haul", "recover", "sweep", "scout",
    "descend", "ascend", "land", "hover", "capture", "spot", "assess", "verify", "confirm", "identify",
    "image", "scrub", "cut", "free", "tighten", "attach", "connect", "plug", "swap", "stock", "restock",
    "give", "return", "come", "arrive", "finish", "complete", "pack", "fill", "count", "raise", "mix",
    "pour", "copy", "email", "unbox", "unpack", "screw", "seal", "hook", "fit", "roll", "fold", "trundle",
    "tape", "start", "wheel", "ship", "post", "label", "cover", "patch", "lay", "set", "hang", "stow",
    "traverse", "perform", "study", "analyze", "analyse", "evaluate", "ensure", "observe", "travel", "provide",
    "switch", "turn", "press", "unlock", "type", "flip", "strap", "dress", "wrap", "push", "pull", "shut", "winch",
    "hoist", "drag", "bandage", "treat", "log", "read", "write", "rinse", "dredge", "refuel", "recharge", "splint",
    "reset", "restart", "follow", "strip", "bag", "run", "park", "change", "tidy", "circle", "shift", "light",
    "weigh", "mop", "bolt", "launch", "polish", "vacuum", "prune", "unscrew", "drain", "pitch", "drill",
    "refill", "wipe", "splice", "calibrate", "adjust", "gather", "dump", "hose", "rig",
))
# Past forms of ACTION_VERBS that the suffix rules of `is_action_verb` miss ("once the crate is brought in").
_IRREGULAR = {"took": "take", "taken": "take", "brought": "bring", "flew": "fly", "flown": "fly", "drove": "drive",
              "driven": "drive", "swam": "swim", "swum": "swim", "goes": "go", "went": "go", "gone": "go",
              "came": "come", "got": "get", "gotten": "get", "gave": "give", "given": "give", "sent": "send",
              "dug": "dig", "fed": "feed", "found": "find", "laid": "lay", "hung": "hang", "swept": "sweep",
              "wrote": "write", "written": "write", "ran": "run"}
# A subordinate part ("once the pallet has been brought in", "from there the boxes need to go up") may have no
# action verb, only these.
_AUXILIARIES = frozenset(("is", "are", "was", "were", "has", "have", "had", "been", "be", "gets", "got", "goes", "need",
                         "needs"))
# A verb after these is an infinitive of purpose or a noun ("after an earthquake to find survivors", "a harvest").
_NOT_BEFORE_VERB = frozenset(("to", "a", "an", "the", "its", "their", "his", "her", "my", "our", "your", "each", "every"))
# Sentences end at ". ", "; ", "! ", "? "; a list's items start at " - " or a number in brackets ("1) ", "(2) ").
_SENTENCES = re.compile(r"(?<=[.;!?])\s+(?=\S)|\s+-\s+|\s+(?=\(?\d{1,2}\)\s)")
# (pattern, swap): `swap` parts happen in the other order than written.
_LEADING = ((re.compile(r"^(?:before|prior\s+to)\s+(.+?),\s*(.+)$", re.IGNORECASE), True),
            (re.compile(r"^(?:after|once|when|as\s+soon\s+as)\s+(.+?),\s*(.+)$", re.IGNORECASE), False))
# (pattern, swap, needs): what the sides need for the split to hold: _SEQUENCE_WORD (nothing, unless the word is an
# adverb inside one clause: `_is_adverb`), _VERBS, or _NEGATION (verbs, and a negated left side: "we can't sort the
# clothes until the bags are brought" is two parts, "hover above him until the boat arrives" one).
_VERBS, _NEGATION, _SEQUENCE_WORD = "verbs", "negation", "sequence word"
_INSIDE = ((re.compile(r",?\s+and,?\s+(?=(?:once|after|before(?!\s+(?:that|this)\b)|when|as\s+soon\s+as)\s)", re.IGNORECASE), False,
            _VERBS),
           (re.compile(r",?\s+(?:and\s+then|then|after\s+that|afterwards|thereafter|followed\s+by|and\s+finally|finally|"
                       r"and\s+later(?:\s+on)?),?\s+",
                       re.IGNORECASE), False, _SEQUENCE_WORD),  # always splits, unless an adverb (`_is_adverb`)
           (re.compile(r",?\s+and\s+(?:from|down|up|in|out|over)?\s*there,?\s+", re.IGNORECASE), False, _VERBS),
           (re.compile(r",?\s+(?:but|and)\s+(?:first|before\s+(?:that|this))(?:\s+of\s+all)?,?\s+", re.IGNORECASE), True,
            _VERBS),
           (re.compile(r",?\s+after\s+(?:which|this),?\s+", re.IGNORECASE), False, _VERBS),
           (re.compile(r",?\s+(?:before|prior\s+to)\s+", re.IGNORECASE), False, _VERBS),
           (re.compile(r",?\s+(?:after|once|as\s+soon\s+as)\s+", re.IGNORECASE), True, _VERBS),
           (re.compile(r",?\s+until\s+", re.IGNORECASE), True, _NEGATION))
_NEGATED = re.compile(r"\b(?:not|never|cannot|nothing|nobody|no\s+one|(?:can|won|don|doesn|didn|mustn|shouldn|isn|aren)['’]t)\b",
                      re.IGNORECASE)
_UNTIL = re.compile(r"\buntil\b", re.IGNORECASE)
_ENDS_WITH_AUXILIARY = re.compile(r"\b(?:is|are|was|were|be|been|will|would|should|must|can|could|may|might|shall|has|"
                                  r"have|had|gets?|got|needs?)\s*$", re.IGNORECASE)
_JOINED = re.compile(r",|\band\b", re.IGNORECASE)
# Where a clause inside a sentence starts: after a comma, or at "where", "so that", "which", "who" or "and".
_CLAUSE_START = re.compile(r",\s*|\s(?=(?:where|so\s+that|which|who|and)\b)", re.IGNORECASE)
# A word that links a step to the one before ("then go up to the second floor", "and do the same at the pier").
_LINK = r"(?:then|and|next|now)\s+"
# "map the reef and send the ROV down": "and" before a verb splits only a text with no other sequence word.
_AND_VERB = re.compile(r",?\s+and\s+(?=\w+)", re.IGNORECASE)
# "go in and find it", "get in behind the panels and photograph the line", "once that's done, head to the boiler
# room and reset the unit": getting to the job is part of it.
_GETTING_THERE = re.compile(r"^\s*(?:(?:once|after|when)\b[^,]*,\s*)?(?:" + _LINK + r")?(?:go|get|come|head)\s+"
                            r"(?:to|in|inside|into|through|under|underneath|behind|down|up|over|"
                            r"out|along|across|round|around)\b", re.IGNORECASE)
# A side opened by a sequence word that the operator does ("before we light the burner, check the flue").
_OPERATOR = re.compile(r"^\s*(?:we|i)\b", re.IGNORECASE)
# A part that goes back ("come back", "bring the empty one back", "return to the lift"); "back" as a noun
# or an adjective ("the back of the van", "the back door") is not one.
_RETURN = re.compile(r"\b(?:return(?:s|ed|ing)?|back)\b"
                     r"(?!\s+(?:of|door|doors|yard|garden|wall|room|seat|entrance|gate|end|office|row|on|stairs?|staircase|"
                     r"stairwell|steps|lane|road|alley|corridor|passage|porch|field|paddock|deck|panel)\b)",
                     re.IGNORECASE)
# "back in the lab, split the cores open" says where a job is done, not that someone goes back.
_BACK_AT = re.compile(r"^back\s+(?:in|at)\s", re.IGNORECASE)
# "once the tide is back in" is a state, not someone going back.
_BACK_STATE = re.compile(r"\b(?:is|are|was|were|be|been)\s+back\b", re.IGNORECASE)
# "hand it back to her" gives something to someone and "rack breaker 2 back in" restores it: jobs, not going back.
_JOB_BACK = re.compile(r"\b(?:(?:hand|give|gave|pass)(?:s|ed|ing)?\s+(?:\w+\s+){0,3}?back|"
                        r"(?:put|plug|switch|turn|screw|bolt|fit|rack|slot|lock|hang|set|place|clip|hook|wire|latch|tie)"
                        r"(?:s|ed|ing|ted|ting)?\s+(?:\w+\s+){0,3}?back\s+(?:on|in|up|together|into\s+place)\b)",
                        re.IGNORECASE)
# A comma before a word that may be a verb, not before a conjunction ("..., and", "..., then" split elsewhere).
_COMMA_VERB = re.compile(r",\s+(?!(?:and|then|but|or)\b)(?=(\w+)\s)", re.IGNORECASE)
# A comma list's item starts after a comma, or after the ", and" before its last item ("set them up on the bank,
# dive the quarry, and finish with a photo from above").
_PIECE_BOUNDARY = re.compile(r",\s+(?:and\s+)?(?!(?:and|then|but|or)\b)(?=(\w+)\s)", re.IGNORECASE)
_LIST_MARK = re.compile(r"^(?:-|\(?\d{1,2}\))\s*")
_FILLER = re.compile(r"^(?:first(?:ly)?|then|next|and|finally|afterwards|thereafter|after that|lastly)[,\s]+",
                     re.IGNORECASE)
_TRAILING = re.compile(r"[,\s]+(?:and|then|and then|first)$", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
_LEADING_FILLERS = frozenset(("then", "next", "first", "firstly", "please", "now", "also", "finally", "and", "lastly",
                              "afterwards", "thereafter", "so"))
# Words that open an instruction's sentence before its verb ("Once the tide is out, ...", "At the dock, ...").
_INSTRUCTION_OPENERS = frozenset((
    "before", "after", "once", "when", "whenever", "while", "where", "wherever", "if", "as", "until", "having",
    "to", "in", "at", "on", "from", "with", "using", "for", "by", "during", "without", "inside", "outside", "near",
    "along", "across", "under", "over", "between", "through", "into", "onto", "up", "down", "around", "there",
    "here", "you", "let", "lets"))
# A sentence with a sequence word is a step ("the hay bales go down the lane to the barn afterwards").
# "next" before a time ("the new jetty goes in next spring") is no sequence word.
_SEQUENCE = re.compile(r"\b(?:then|afterwards|thereafter|after\s+that|next(?!\s+(?:spring|summer|autumn|fall|winter|season|year|month|"
                       r"week|weekend|day|morning|night|time|shift|monday|tuesday|wednesday|thursday|friday|saturday|"
                       r"sunday))|first|finally|later)\b", re.IGNORECASE)
# A later sentence that opens with these happens before the sentence written before it ("Carry the box up the
# slope. Before that, look at the rim from the air.").
_EARLIER = re.compile(r"^(?:but\s+)?(?:before\s+(?:that|this|then|doing\s+(?:that|this|so))|first\s+of\s+all)\s*,?\s+|"
                      r"^but\s+first\s*,?\s+", re.IGNORECASE)
# "...; someone has to unlock the store first": a later sentence ending so also happens before the one before it.
_ENDS_WITH_FIRST = re.compile(r"(?<!\bthe)\s+first\s*[.!]?\s*$", re.IGNORECASE)
# A sentence that asks for something or addresses a robot ("Then the drone films the roof.") is an instruction.
_REQUEST = re.compile(r"\b(?:should|must|needs?|has\s+to|have\s+to|will|can|could|would|shall|please|wants?|"
                      r"wanted|like|ensure|make\s+sure|robots?|drones?|rovs?|auvs?|uavs?|humanoids?|you|your)\b",
                      re.IGNORECASE)
_CONTINUES = re.compile(r"^(?:" + _LINK + r")*(?:do\s+the\s+same|repeat|same\s+again|carry\s+on|continue|keep\s+going|"
                        r"likewise|report|send\s+(?:us|me)|tell\s+(?:us|me)|let\s+(?:us|me)\s+know)\b|\b(?:too|as\s+well)$",
                        re.IGNORECASE)
# "There's a wasp nest in the eaves" informs; "There, unload the crates" does not.
_EXISTENTIAL = re.compile(r"^\s*there(?:['’]s|\s+(?:is|are|was|were|may|might|could|seems?|appears?|has|have|had)\b)",
                          re.IGNORECASE)
# A work ticket's label before the request ("Museum ticket: reattach the plates", "Port ops: scan stack B").
_LABEL = re.compile(r"^\s*[\w'’ -]{1,60}:\s+")
_CONTRACTED_IS = re.compile(r"\b(it|that|he|she|there|what|who)['’]s\b")
_OPENED_CLAUSE_END = re.compile(r",|\s+and\s+")


def task_parts(task: str) -> list[str]:
    """The task's parts in time order (one part when it does not split); each without end punctuation.

    At most MAX_TASK_PARTS: the parts past the last one allowed join it.
    """
    parts: list[str] = []
    sentences = _SENTENCES.split(task.strip())
    previous, left_out = 0, None  # where the parts of the sentence before start; that sentence, if a statement
    for sentence in sentences:
        earlier = _EARLIER.match(sentence)
        if earlier or (_ENDS_WITH_FIRST.search(sentence) and (parts or left_out)):
            if left_out:  # what happens "before that" follows a step, not a statement
                previous = len(parts)
                parts += _split(left_out)
            parts[previous:previous] = _split(sentence[earlier.end():] if earlier else sentence)
            left_out = None
        else:
            split = _split(sentence)
            if len(sentences) == 1 or len(split) > 1 or not _is_statement(sentence):
                previous, left_out = len(parts), None
                parts += split
            else:
                left_out = sentence
    # a part with no word ("1" of "1. Drive the drums ...") is none
    parts = [part for part in (_tidy(part) for part in parts) if _WORD.search(part.lower())] or [_tidy(task) or task]
    if len(parts) > MAX_TASK_PARTS:
        parts[MAX_TASK_PARTS - 1:] = [", then ".join(parts[MAX_TASK_PARTS - 1:])]
    return parts


def _split(text: str, and_verb: bool = True) -> list[str]:
    for pattern, swap in _LEADING:
        match = pattern.match(text.strip())
        if match and _has_verb(match[1], opened=True) and not is_continuation(match[1]) and _has_verb(match[2]):
            first, second = _split(match[1], False), _split(match[2], False)
            return second + first if swap else first + second
    for pattern, swap, needs in _INSIDE:
        for match in pattern.finditer(text):
            left, right = text[: match.start()], text[match.end():]
            if needs == _SEQUENCE_WORD and _is_adverb(match[0], left):
                # "..., where it is then fitted": the later step starts with the clause the adverb is in
                start = max((clause.end() for clause in _CLAUSE_START.finditer(left)), default=0)
                if start and _has_verb(left[:start]):
                    return _split(left[:start], False) + _split(text[start:], False)
                continue
            if len(_WORD.findall(left)) > 1 and len(_WORD.findall(right)) > 1 and _split_holds(needs, left, right):
                first, second = _split(left, False), _split(right, False)
                return second + first if swap else first + second
    if and_verb:
        for match in _AND_VERB.finditer(text):
            left, right = text[: match.start()], text[match.end():]
            if _starts_with_verb(right) and _has_verb(left) and not _only_gets_there(left):
                return [left, right]
    return [text]


def _is_adverb(separator: str, left: str) -> bool:
    """Whether a sequence word inside one clause is an adverb, not a split ("the supplies are then driven down the
    road", "the harbour bed then needs surveying"): no comma or "and" before it, and an auxiliary or no verb."""
    return not _JOINED.search(separator) and bool(_ENDS_WITH_AUXILIARY.search(left) or not _has_verb(left))


def _split_holds(needs: str, left: str, right: str) -> bool:
    """Whether a split between `left` and `right` holds, by `_INSIDE`'s `needs`."""
    return needs == _SEQUENCE_WORD or (_has_verb(left) and _has_verb(right, opened=True)
                                       and (needs == _VERBS or bool(_NEGATED.search(left))))


def _only_gets_there(text: str) -> bool:
    """Whether `text` only gets to a job ("go in through the cleanout"): a way in and no action verb after it."""
    way_in = _GETTING_THERE.match(text)
    return bool(way_in) and not _has_action_verb(text[way_in.end():])


def _tidy(part: str) -> str:
    part = _LIST_MARK.sub("", part.strip().strip(",;:").strip())
    while (stripped := _TRAILING.sub("", _FILLER.sub("", part.rstrip(".!?;, ")))) != part:
        part = stripped
    return part.strip()


def _is_statement(sentence: str) -> bool:
    """Whether a sentence only informs ("The harbour master says one of them is flickering"): it opens with
    neither an action verb nor a subordinating word or preposition, asks nothing ("should", "need to",
    "please"), names no robot and no sequence word ("afterwards"), and has no comma followed by an action
    verb ("At the dock, unload the pallets"); "there is" opens a statement, a ticket's label ("Port ops:") none.
    `task_parts` leaves it out: it is no step of the job (the whole task is still read with it)."""
    sentence = _LABEL.sub("", sentence)
    words = _WORD.findall(sentence.lower())
    while len(words) > 1 and words[0] in _LEADING_FILLERS:
        words = words[1:]
    if not words:
        return False
    opener = words[0] in _INSTRUCTION_OPENERS and not _EXISTENTIAL.match(sentence)
    return not (is_action_verb(words[0]) or opener or _REQUEST.search(sentence) or _SEQUENCE.search(sentence)
                or (_NEGATED.search(sentence) and _UNTIL.search(sentence))
                or any(is_action_verb(match[1]) for match in _COMMA_VERB.finditer(sentence)))


def is_continuation(part: str) -> bool:
    """Whether a part does the step before again elsewhere ("do the same at the sand pit", "repeat it at the
    south transect", "carry on to the second valve", "check the next mast too"), reports on it ("send us his
    position", "let me know") or has no action verb of its own ("cages 4 and 5", "once it's up", "where the
    scan shows silt")."""
    return bool(_CONTINUES.search(part)) or not _has_action_verb(part)


def comma_pieces(part: str) -> list[str]:
    """The steps of a part told as a comma list ("lift the drums off the canal bed, wheel them to the depot"):
    split before each comma (or ", and") followed by an action verb, where the text before has a verb and the text after
    more than two words; [part] when there is no such comma or more pieces than MAX_TASK_PARTS. The team
    rule keeps a part whole unless a piece is clearly another robot's work (`ember_core.teams.expand_pieces`)."""
    pieces, start = [], 0
    for match in _PIECE_BOUNDARY.finditer(part):
        if (is_action_verb(match[1]) and _has_action_verb(part[start:match.start()])
                and len(part[match.end():].split()) > 2):
            pieces.append(part[start:match.start()])
            start = match.end()
    pieces = [piece for piece in (_tidy(piece) for piece in pieces + [part[start:]]) if piece]
    return pieces if 1 < len(pieces) <= MAX_TASK_PARTS else [part]


def is_return(part: str) -> bool:
    """Whether a part goes back ("come back down", "bring the empty ones back", "return to the lift"); "the tide is
    back in" is a state, "rack breaker 2 back in" a job and "the back stairs" a place."""
    return bool(_RETURN.search(part)) and not (_BACK_AT.match(part) or _JOB_BACK.search(part) or _BACK_STATE.search(part))


def is_action_verb(word: str) -> bool:
    """Whether `word` (any case) is an ACTION_VERBS verb, bare or with -s, -es, -ed or -ing, or one with "re"."""
    word = word.lower().strip(".,;:!?\"'()")
    if word.startswith("re") and len(word) > 5 and is_action_verb(word[2:]):  # "reattach", "recalibrated"
        return True
    forms = {word, _IRREGULAR.get(word, word)}
    for suffix, replacements in (("ing", ("", "e")), ("ied", ("y",)), ("ies", ("y",)), ("ed", ("", "e")),
                                 ("es", ("", "e")), ("s", ("",))):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            forms |= {stem + extra for extra in replacements}
            if suffix in ("ing", "ed") and stem[-1] == stem[-2]:  # "mapping", "dropped"
                forms.add(stem[:-1])
    return bool(forms & ACTION_VERBS)


def _has_verb(text: str, opened: bool = False) -> bool:
    """Whether `text` has an action verb or an auxiliary; in a side a sequence word `opened`, not one after "to" or
    an article, and, unless it has an auxiliary, before its first "and" or comma ("after the hailstorm and report
    the damage" has none; "once the drums and crates are lifted" has one), and none when the operator is its
    subject ("before we light the burner")."""
    if opened and _OPERATOR.match(text):
        return False
    text = _CONTRACTED_IS.sub(r"\1 is", text.lower())
    if opened and not _AUXILIARIES.intersection(_WORD.findall(text)):
        text = _OPENED_CLAUSE_END.split(text, 1)[0]
    words = _WORD.findall(text)
    return any((is_action_verb(word) or word in _AUXILIARIES) and not (opened and before in _NOT_BEFORE_VERB)
               for before, word in zip([""] + words, words))


def _has_action_verb(text: str) -> bool:
    """Whether `text` has an action verb that is no auxiliary ("have") and follows no "to" or article ("the scan")."""
    words = _WORD.findall(text.lower())
    return any(is_action_verb(word) and word != "have" and before not in _NOT_BEFORE_VERB
               for before, word in zip([""] + words, words))


def _starts_with_verb(text: str) -> bool:
    words = _WORD.findall(text.lower())
    return bool(words) and is_action_verb(words[0])
