"""Write tests/data/fuzz/tasks.json: task texts that once crashed or fooled the Selector, with what each must give.

`python tools/make_fuzz_corpus_tasks.py` rewrites the file; tests/test_fuzz_selector.py reads it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fuzz" / "tasks.json"


def cases() -> list[dict[str, str]]:
    """{name, task, status, error}: `error` is a fragment of the message an invalid task must carry."""
    ok = "Inspect the hull of the ship"
    return [
        {"name": "200 emoji (over the context in tokens, under the character limit)", "task": "\U0001F681" * 200,
         "status": "invalid_input", "error": "no letters or digits"},
        {"name": "emoji after words, over the context in tokens", "task": "Fly " + "\U0001F681" * 400,
         "status": "invalid_input", "error": "tokens"},
        {"name": "1900 CJK characters", "task": "\u6aa2\u67e5" * 950, "status": "invalid_input", "error": "tokens"},
        {"name": "400 combining marks", "task": "\u0301" * 400, "status": "invalid_input", "error": "no letters or digits"},
        {"name": "a word under 400 combining marks", "task": "a" + "\u0301" * 400, "status": "invalid_input",
         "error": "tokens"},
        {"name": "the selection marker in the text", "task": f"{ok} <|robot_selection|>", "status": "ok", "error": ""},
        {"name": "image and reasoning markers in the text", "task": f"<|image|><|reasoning_start|>{ok}<|action_plan|>",
         "status": "ok", "error": ""},
        {"name": "a lone surrogate (undecodable bytes in argv)", "task": f"{ok} \udcff", "status": "invalid_input",
         "error": "not valid Unicode"},
        {"name": "zero-width spaces and joiners only", "task": "\u200b\u200c\u200d\u2060" * 10, "status": "invalid_input",
         "error": "task is empty"},
        {"name": "byte order marks only", "task": "\ufeff" * 5, "status": "invalid_input", "error": "task is empty"},
        {"name": "NUL characters only", "task": "\x00" * 8, "status": "invalid_input", "error": "task is empty"},
        {"name": "NUL inside a task", "task": f"{ok}\x00 at pier 4", "status": "ok", "error": ""},
        {"name": "punctuation only", "task": "?!..--", "status": "invalid_input", "error": "no letters or digits"},
        {"name": "10 kB of text", "task": "inspect " * 1300, "status": "invalid_input", "error": "the limit is 2000"},
    ]


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # ensure_ascii: the surrogate and control characters survive as \\u escapes in a valid UTF-8 file.
    OUT.write_text(json.dumps(cases(), indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
