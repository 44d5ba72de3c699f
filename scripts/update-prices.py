#!/usr/bin/env python3
"""Regenerates crates/costs/data/prices.json, the price snapshot Apex ships.

Source: LiteLLM's `model_prices_and_context_window_backup.json`, read from the `litellm`
wheel on PyPI (USD per token). Only text models (chat, completion, responses, embedding)
of the providers below are kept, and prices are converted exactly (decimal arithmetic,
no floating-point rounding) to integer micro-dollars per 1M tokens.

    python3 scripts/update-prices.py [--version 1.110.2]
"""
import argparse
import datetime
import decimal
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

PROVIDERS = {"openai", "anthropic", "gemini", "mistral", "deepseek", "xai", "groq", "cohere_chat",
             "together_ai", "perplexity"}
MODES = {"chat", "completion", "responses", "embedding"}
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/costs/data/prices.json"


def per_mtok_micros(per_token):
    """USD per token -> integer micro-dollars per 1M tokens, exactly (half away from zero)."""
    if per_token is None:
        return None
    value = decimal.Decimal(repr(per_token)) * 1_000_000 * 1_000_000
    return int(value.quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


def undated(model):
    """'name-2024-08-06' or 'name-20241022' -> 'name'; None when there is no date suffix."""
    import re
    m = re.fullmatch(r"(.+?)-(\d{4}-\d{2}-\d{2}|\d{8})", model)
    return m.group(1) if m else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="1.110.2", help="litellm version on PyPI")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", f"litellm=={args.version}", "--no-deps",
                        "-q", "-d", tmp], check=True)
        wheel = next(pathlib.Path(tmp).glob("litellm-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            table = json.loads(z.read("litellm/model_prices_and_context_window_backup.json"))

    models = []
    for name, spec in sorted(table.items()):
        if not isinstance(spec, dict) or spec.get("litellm_provider") not in PROVIDERS:
            continue
        if spec.get("mode") not in MODES or spec.get("input_cost_per_token") is None:
            continue
        provider = spec["litellm_provider"]
        model = name.split("/", 1)[1] if "/" in name else name
        if "/" in model or model.startswith("ft:"):
            continue
        input_ = per_mtok_micros(spec.get("input_cost_per_token"))
        output = per_mtok_micros(spec.get("output_cost_per_token")) or 0
        cached = per_mtok_micros(spec.get("cache_read_input_token_cost"))
        batch_in = per_mtok_micros(spec.get("input_cost_per_token_batches"))
        discount = 0
        if batch_in is not None and input_:
            discount = max(0, min(100, round(100 - batch_in * 100 / input_)))
        models.append({
            "provider": "anthropic" if provider == "anthropic" else provider.removesuffix("_chat"),
            "model": model,
            "mode": spec["mode"],
            "input": input_,
            "output": output,
            # Without a published cache rate, cached input is billed as input.
            "cached_input": cached if cached is not None else input_,
            "batch_discount_pct": discount,
        })
    # One entry per model name: the first provider in name order wins.
    seen, unique = set(), []
    for m in models:
        if m["model"] not in seen:
            seen.add(m["model"])
            unique.append(m)
    # A dated snapshot priced exactly like its family is an alias: drop it, so usage of
    # "gpt-4o-2024-08-06" is priced and grouped as "gpt-4o". Snapshots with a price of
    # their own (gpt-4o-2024-05-13) stay.
    prices = {m["model"]: (m["input"], m["output"], m["cached_input"]) for m in unique}
    unique = [m for m in unique
              if not ((family := undated(m["model"])) and prices.get(family) == prices[m["model"]])]
    snapshot = {
        "source": f"litellm {args.version} model_prices_and_context_window_backup.json (PyPI wheel)",
        "generated": datetime.date.today().isoformat(),
        "unit": "micro-dollars per 1M tokens",
        "models": unique,
    }
    OUT.write_text(json.dumps(snapshot, indent=0, sort_keys=False) + "\n")
    print(f"wrote {len(unique)} models to {OUT}")


if __name__ == "__main__":
    main()
