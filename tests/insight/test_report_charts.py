"""The report's SVG charts: valid SVG, geometry proportional to the values, every label escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from storefunnel.insight.report_charts import (
    Series,
    bar_chart,
    hbar_chart,
    heat_color,
    heat_text_color,
    line_chart,
    nice_ceiling,
    plain,
)

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(markup: str) -> ET.Element:
    """The chart as XML: it must be well-formed on its own (the PDF and mail clients get it as is)."""
    return ET.fromstring(str(markup))


def bars(root: ET.Element) -> list[ET.Element]:
    return root.findall("svg:rect", NS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 1.0),
        (-3, 1.0),
        (0.7, 1.0),
        (1, 1.0),
        (1.2, 2.0),
        (2.2, 2.5),
        (3, 5.0),
        (7, 10.0),
        (953, 1000.0),
        (1589, 2000.0),
    ],
)
def test_nice_ceiling(value: float, expected: float) -> None:
    assert nice_ceiling(value) == pytest.approx(expected)


def test_bar_heights_are_proportional_and_titled() -> None:
    root = parse(bar_chart(["a", "b", "c"], [Series("People", [100, 50, 25])], title="Steps"))
    rects = bars(root)
    heights = [float(r.get("height", "0")) for r in rects]
    assert len(rects) == 3
    assert heights[0] == pytest.approx(2 * heights[1], rel=0.01)
    assert heights[1] == pytest.approx(2 * heights[2], rel=0.01)
    # the tallest bar reaches the rounded top of the axis (100 is its own nice ceiling): the full plot height
    assert heights[0] == pytest.approx(220 - 16 - 34, abs=0.2)
    titles = [r.find("svg:title", NS).text for r in rects]  # type: ignore[union-attr]
    assert titles == ["a · People: 100", "b · People: 50", "c · People: 25"]
    texts = [t.text for t in root.findall("svg:text", NS)]
    assert {"100", "50", "25"} <= set(texts)  # values over the bars
    assert root.find("svg:title", NS).text == "Steps"  # type: ignore[union-attr]


def test_grouped_bars_have_a_legend_and_skip_missing_values() -> None:
    root = parse(
        bar_chart(
            ["Email", "Direct"],
            [Series("Revenue", [300, None], "#16a34a"), Series("Spend", [100, 0], "#dc2626")],
            title="Revenue and spend",
        )
    )
    fills = [r.get("fill") for r in bars(root)]
    # two legend swatches, then one bar for each positive value only
    assert fills == ["#16a34a", "#dc2626", "#16a34a", "#dc2626"]
    assert "Revenue" in [t.text for t in root.findall("svg:text", NS)]


def test_labels_and_titles_are_escaped() -> None:
    evil = '<script>alert("x")</script> & "quoted"'
    for chart in (
        bar_chart([evil], [Series(evil, [1])], title=evil),
        hbar_chart([evil], [1.0], title=evil),
        line_chart([evil, "b"], [Series(evil, [1, 2])], title=evil),
    ):
        text = str(chart)
        assert "<script>" not in text
        assert "&lt;script&gt;" in text
        root = parse(chart)
        assert root.find("svg:title", NS).text == evil  # type: ignore[union-attr]


def test_hbar_diverges_around_zero() -> None:
    root = parse(hbar_chart(["down", "up", "none"], [-0.4, 0.2, None], title="Change", fmt=lambda v: f"{v:+.0%}"))
    down, up = bars(root)
    zero = float(root.findall("svg:line", NS)[-1].get("x1", "0"))
    assert float(down.get("x", "0")) + float(down.get("width", "0")) == pytest.approx(zero, abs=0.2)
    assert float(up.get("x", "0")) == pytest.approx(zero, abs=0.2)
    assert float(down.get("width", "0")) == pytest.approx(2 * float(up.get("width", "0")), rel=0.01)
    assert down.get("fill") != up.get("fill")
    texts = [t.text for t in root.findall("svg:text", NS)]
    assert "-40%" in texts
    assert "+20%" in texts
    assert "no data" in texts


def test_hbar_intervals_colours_and_limit() -> None:
    """Whiskers span the interval; the axis stops at the limit, so an unbounded interval does not squash the rest."""
    root = parse(
        hbar_chart(
            ["a", "b"],
            [-0.5, 0.25],
            title="t",
            colors=["#111111", "#222222"],
            intervals=[(-3.0, -0.25), (0.0, float("inf"))],
            limit=1.0,
        )
    )
    a, b = bars(root)
    assert (a.get("fill"), b.get("fill")) == ("#111111", "#222222")
    lines = root.findall("svg:line", NS)
    whisker_a, whisker_b, zero_line = lines
    zero = float(zero_line.get("x1", "0"))
    unit = float(a.get("width", "0")) / 0.5  # pixels per 100%
    assert float(whisker_a.get("x1", "0")) == pytest.approx(zero - 1.0 * unit, abs=0.2)  # -300% stops at -100%
    assert float(whisker_a.get("x2", "0")) == pytest.approx(zero - 0.25 * unit, abs=0.2)
    assert float(whisker_b.get("x2", "0")) == pytest.approx(zero + 0.25 * unit, abs=0.2)  # +inf: to the edge
    assert float(b.get("width", "0")) == pytest.approx(0.25 * unit, abs=0.2)
    with pytest.raises(ValueError, match="intervals"):
        hbar_chart(["a"], [1.0], title="t", intervals=[])


def test_hbar_treats_infinite_values_as_missing() -> None:
    root = parse(hbar_chart(["a", "b"], [float("inf"), 0.5], title="t"))
    assert len(bars(root)) == 1
    assert "no data" in [t.text for t in root.findall("svg:text", NS)]


def test_line_breaks_at_missing_values() -> None:
    root = parse(line_chart(list("abcde"), [Series("s", [1, 2, None, 4, 5])], title="t"))
    lines = root.findall("svg:polyline", NS)
    assert len(lines) == 2
    assert [len(pl.get("points", "").split()) for pl in lines] == [2, 2]
    assert len(root.findall("svg:circle", NS)) == 4
    ys = [float(c.get("cy", "0")) for c in root.findall("svg:circle", NS)]
    assert ys == sorted(ys, reverse=True)  # larger values are higher up


def test_single_point_and_empty_charts_do_not_fail() -> None:
    assert parse(line_chart(["only"], [Series("s", [3])], title="t")).findall("svg:circle", NS)
    assert parse(line_chart([], [Series("s", [])], title="t")) is not None
    assert bars(parse(bar_chart([], [Series("s", [])], title="t"))) == []
    assert bars(parse(hbar_chart([], [], title="t"))) == []


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        bar_chart(["a", "b", "c"], [Series("s", [1, 2])], title="t")
    with pytest.raises(ValueError, match="1 values for 2 labels"):
        hbar_chart(["a", "b"], [1], title="t")


def test_heat_colours() -> None:
    assert heat_color(0.0) == "#ffffff"
    assert heat_color(1.0) == "#2563eb"
    assert heat_color(2.0, high=1.0) == "#2563eb"  # clipped
    assert heat_color(None) == "#f1f5f9"
    mid = heat_color(0.5)
    assert mid not in ("#ffffff", "#2563eb")
    assert heat_text_color(0.9) == "#ffffff"
    assert heat_text_color(0.1) == "#0f172a"


def test_plain_numbers() -> None:
    assert plain(1234.0) == "1,234"
    assert plain(0.25) == "0.25"
