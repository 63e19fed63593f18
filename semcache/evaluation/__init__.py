"""Hit quality, measured and fitted (tooling: `semcache eval` and `semcache calibrate`).

    pairs = data.select(data.load_pairs("qqp-dev.jsonl"), "test")
    vectors = embeddings.embed_texts_sync(data.texts_of(pairs), embedder_address)
    result = report.report(pairs=pairs, vectors=vectors, policy=policy, protocol="stream")
    print(report.format_table(result))

`data` (pairs, splits, the `Vectors` protocol), `embeddings` (texts -> vectors through an
embedder, cached on disk), `metrics` (the pairs and stream protocols, pure), `report` (a
typed `Report`, its JSON and its table), `plot` (charts), `calibrate` (fitting a policy).
"""
