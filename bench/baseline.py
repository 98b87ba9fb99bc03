"""The pipeline analysts run today, as a notebook would: pandas + lifetimes + scikit-learn.

    python bench/baseline.py log.parquet

Reads the log, builds the RFM summary with lifetimes' summary_data_from_transaction_data,
fits BetaGeoFitter and GammaGammaFitter, computes 12-month CLV with
customer_lifetime_value, and clusters with one fixed-k KMeans (n_init=10) on the
same log-scaled features clvx uses. Prints stage times as JSON. The baseline for
clvx's benchmark; not part of clvx.
"""

import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore")
times = {}
t = time.perf_counter()


def lap(name):
    global t
    now = time.perf_counter()
    times[name] = now - t
    t = now


df = pd.read_parquet(sys.argv[1], columns=["customer_id", "date", "price", "quantity"])
df = df[df["customer_id"].notna()]
df["amount"] = df["price"] * df["quantity"]
lap("load")
rfm = summary_data_from_transaction_data(df, "customer_id", "date", monetary_value_col="amount", freq="D")
lap("rfm")
bgf = BetaGeoFitter().fit(rfm["frequency"], rfm["recency"], rfm["T"])
repeat = rfm[(rfm["frequency"] > 0) & (rfm["monetary_value"] > 0)]
ggf = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
lap("fit")
rfm["p_alive"] = bgf.conditional_probability_alive(rfm["frequency"], rfm["recency"], rfm["T"])
rfm["clv"] = ggf.customer_lifetime_value(bgf, rfm["frequency"], rfm["recency"], rfm["T"], rfm["monetary_value"], time=12, discount_rate=0.0079, freq="D")
lap("predict")
features = np.column_stack([np.log1p(rfm["T"] - rfm["recency"]), np.log1p(rfm["frequency"]), np.log1p(rfm["monetary_value"]), rfm["p_alive"], np.log1p(rfm["clv"].clip(lower=0))])
rfm["segment"] = KMeans(n_clusters=4, n_init=10, random_state=42).fit_predict(StandardScaler().fit_transform(features))
profile = rfm.groupby("segment").agg(n=("clv", "size"), clv=("clv", "sum"), p_alive=("p_alive", "mean"))
lap("segment")
print(json.dumps({"stages": times, "customers": len(rfm)}))
