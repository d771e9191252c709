# interim stand-in until the price book module lands
from __future__ import annotations
from dataclasses import dataclass
import polars as pl

@dataclass(frozen=True)
class PriceBook:
    prices: dict
    version: str = "stub"

def load_price_book(extra_paths=()) -> PriceBook:
    return PriceBook({"claude-sonnet-4": (3, 15, 3.75, 6, 0.3), "gpt-4o": (2.5, 10, 2.5, 2.5, 1.25)})

def price_messages(frame: pl.LazyFrame, book: PriceBook) -> pl.LazyFrame:
    t = pl.DataFrame([{"price_model": k, "pi": int(v[0]*1e6), "po": int(v[1]*1e6), "pw": int(v[2]*1e6), "pw1": int(v[3]*1e6), "pr": int(v[4]*1e6)} for k, v in book.prices.items()]).lazy()
    m = pl.col("model").str.replace(r"-\d{8}$", "")
    out = frame.with_columns(price_model=m).join(t, on="price_model", how="left", maintain_order="left")
    cost = (pl.col("input_tokens")*pl.col("pi") + (pl.col("cache_creation_input_tokens")-pl.col("cache_creation_1h_input_tokens"))*pl.col("pw")
            + pl.col("cache_creation_1h_input_tokens")*pl.col("pw1") + pl.col("cache_read_input_tokens")*pl.col("pr") + pl.col("output_tokens")*pl.col("po"))
    return out.with_columns(cost_pico_usd=cost, priced=pl.col("pi").is_not_null()).drop("pi","po","pw","pw1","pr")
