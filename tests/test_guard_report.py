from semcache.evaluation import data, guard_report


def test_counts_each_guard_per_kind_and_label() -> None:
    pairs = [
        data.Pair("Convert 5 km to miles", "Convert 50 km to miles", 0, kind="number"),
        data.Pair("Can I use my PS4 pad on a PS5?", "Can I use my PS5 pad on a PS4?", 0),
        data.Pair("How do I reverse a list?", "how can i reverse a list", 1),
    ]
    totals, fired = guard_report.fire_counts(pairs)
    assert totals == {"number": 1, "label 0": 1, "label 1": 1}
    assert fired["number"]["number"] == 1
    assert fired["label 0"]["order"] == 1
    assert sum(fired["label 1"].values()) == 0
    table = guard_report.table(totals, fired).splitlines()
    assert table[0].split()[:3] == ["kind", "pairs", "negation"]
    assert [row.split()[0] for row in table[1:]] == ["label", "label", "number"]
