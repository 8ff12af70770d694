"""The explorer page in a real browser (headless Chromium through Selenium), made by
`write_page` from a tiny real run (LeNet-5, 600 MNIST images, two epochs, six
snapshot positions): it opens with no console error, and a click on a node, a
map or a confusion cell, the step slider, the pass toggle and the vital-sign choice
each show what the data holds for that position (the replayed values).  `render`
itself is checked without a browser on a small hand-made page."""
from __future__ import annotations

import base64
import io
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from browser import browser, console_errors  # noqa: F401  (browser is a fixture)
from cnngraph.core.errors import CnnError
from cnngraph.explore.page import render, unpack
from conftest import ROOT, mnist_dir

SCREENSHOT = ROOT / "docs" / "images" / "explorer.png"


def png(values) -> str:
    from PIL import Image
    pixels = np.asarray(values, dtype=float)
    pixels = np.uint8(255 * (pixels - pixels.min()) / (np.ptp(pixels) or 1))
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def sample_data() -> dict:
    """A small hand-made page: a two-layer graph, three positions, one explanation."""
    rng = np.random.default_rng(0)
    nodes = [{"id": i, "label": i, "op": op, "layer": layer, "pass": "forward", "shape": [None, 2, 4, 4],
              "role": "op", "x": 80, "y": 30 + 50 * k, "w": 120, "h": 30}
             for k, (i, op, layer) in enumerate([("x", None, None), ("C1/conv_valid", "conv_valid", "C1"),
                                                 ("C1/tanh", "tanh", "C1")])]
    back = [dict(n, id=n["id"] + "'", **{"pass": "backward"}) for n in nodes[1:]]
    edges = [{"from": a["id"], "to": b["id"], "points": [[80, a["y"] + 15], [80, b["y"] - 15]]}
             for a, b in zip(nodes, nodes[1:])]

    def position(g):
        maps = rng.normal(size=(2, 4, 4))
        return {"step": g, "epoch": g / 10, "lr": 0.1,
                "vitals": {n["id"]: {"activation_std": float(rng.random()), "grad_norm": 10 ** -g}
                           for n in nodes[1:] + back},
                "maps": {"C1": {"shape": [2, 4, 4], "range": [float(maps.min()), float(maps.max())],
                                "png": [png(m) for m in maps]}},
                "deltas": {"C1": {"shape": [2, 4, 4], "range": [-1, 1], "png": [png(m) for m in -maps]}},
                "kernels": {"C1.kernel": {"shape": [2, 1, 3, 3], "range": [-1, 1],
                                          "png": [png(rng.normal(size=(3, 3))) for _ in range(2)]}},
                "scalars": {"C1.bias": [0.1 * g, -0.1 * g]},
                "explain": {"C1": {"0": {"layer": "C1", "map": 0, "pixel": [1, 2], "value": 0.5 + g,
                                         "steps": [{"op": "conv_valid", "text": "correlate </script>",
                                                    "inputs": [{"name": "x", "map": 0, "values": [[1, 2], [3, 4]]}],
                                                    "weights": [[1, 0], [0, 1]], "partial": 5, "result": 5},
                                                   {"op": "tanh", "text": "the activation", "result": 0.5 + g}]}}},
                "explain_delta": {}}

    return {"format": 1, "title": "sample </script><b>page</b>",
            "model": {"file": "sample.cnn", "hash": "0" * 16, "text": "input x : 1 x 6 x 6\n"},
            "run": {"dir": "run", "backend": "numpy", "dtype": "float64", "epochs": 1,
                    "steps_per_epoch": 10, "made_in_s": 0.1},
            "graphs": {"forward": {"width": 200, "height": 200, "nodes": nodes, "edges": edges},
                       "backward": {"width": 200, "height": 200, "nodes": back, "edges": []}},
            "vital_signs": [{"key": "activation_std", "label": "activation std", "scale": "linear"},
                            {"key": "grad_norm", "label": "gradient norm", "scale": "log"}],
            "layers": {"C1": {"kind": "conv", "shape": [2, 4, 4], "receptive_field": [3, 3],
                              "params": ["C1.kernel", "C1.bias"], "connections": [[0], [0]],
                              "graph_nodes": ["C1/conv_valid", "C1/tanh"]}},
            "test_images": [{"index": 0, "label": 7, "png": png(rng.random((6, 6)))}],
            "positions": [position(g) for g in (1, 3, 10)],
            "gradient_checks": {"C1.kernel": {"rel_error": 1e-9, "ok": True},
                                "C1.bias": {"rel_error": float("nan"), "ok": False}},
            "curves": [{"epoch": 1, "train_loss": 0.5, "train_error": 0.2, "val_error": None}],
            "test_error": 0.25,
            "confusion": {"matrix": [[3, 1], [2, 4]],
                          "images": {"1,0": [{"index": 5, "png": png(rng.random((6, 6)))}]}},
            "mistakes": [{"index": 5, "label": 1, "predicted": 0, "confidence": 0.9,
                          "png": png(rng.random((6, 6))), "saliency_png": png(rng.random((6, 6))),
                          "occlusion_png": png(rng.random((6, 6)))}],
            "alpha_history": {}, "sdlm_steps": {},
            "divergence": None}


# ---- render, without a browser ----------------------------------------------------------------

def embedded(html: str) -> dict:
    """The data a page holds, each position's gzipped computations unpacked."""
    text = re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S).group(1)
    data = json.loads(text)
    for position in data["positions"]:
        position.update(unpack(position))
        del position["packed"]
    return data


def test_render_is_one_file_with_no_network():
    html = render(sample_data())
    assert html.count("</script>") == 2  # the data's and the script's own: no string broke out
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<b>page</b>" not in html and "sample &lt;/script&gt;&lt;b&gt;page" in html
    assert 'title="sample &lt;/script&gt;' in html


def test_render_embeds_the_data_exactly_with_non_finite_numbers_named():
    data = sample_data()
    data["positions"][0]["lr"] = np.float32(0.5)
    data["positions"][0]["scalars"]["C1.bias"] = np.array([math.inf, -math.inf])
    found = embedded(render(data))
    assert found["gradient_checks"]["C1.bias"]["rel_error"] == "NaN"
    assert found["positions"][0]["scalars"]["C1.bias"] == ["Infinity", "-Infinity"]
    assert found["positions"][0]["lr"] == 0.5
    assert found["title"] == data["title"]
    assert found["positions"][2]["explain"] == data["positions"][2]["explain"]


def test_render_refuses_another_format():
    with pytest.raises(CnnError, match="format 2"):
        render({"format": 2})


# ---- the page in Chromium -----------------------------------------------------------------------

#: the run the page is made from: small enough for a test, long enough for a slider
RUN = ["--limit-train", "600", "--limit-test", "200", "--epochs", "2",
       "--snapshots", "6", "--backend", "numpy", "--threads", "1", "--no-plots", "--quiet"]


@pytest.fixture(scope="module")
def page_path(tmp_path_factory):
    """explore.html of a tiny real run of models/lenet5.cnn, made by write_page."""
    data = mnist_dir()
    if data is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    from cnngraph.explore.build import write_page
    run_dir = tmp_path_factory.mktemp("explore") / "run"
    done = subprocess.run([sys.executable, "-m", "cnngraph", "run", "models/lenet5.cnn",
                           "--data", str(data), "--out", str(run_dir), *RUN],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return write_page(run_dir)


@pytest.fixture(scope="module")
def page_data(page_path):
    """The data the page holds, read back from it."""
    return embedded(page_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def page_url(page_path):
    return page_path.as_uri()


@pytest.fixture
def page(browser, page_url):  # noqa: F811  (browser is the fixture imported above)
    """The page freshly opened, its console emptied of what came before."""
    browser.get_log("browser")
    return opened(browser, page_url)


def opened(driver, url):
    """driver with url loaded and its graph drawn (the page draws it after loading)."""
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    WebDriverWait(driver, 10).until(lambda d: d.find_elements("css selector", "#graph .node"))
    return driver


def css(driver, selector):
    return driver.find_element("css selector", selector)


def every(driver, selector):
    return driver.find_elements("css selector", selector)


def chosen_node(data) -> tuple[str, str]:
    """A forward node with a vital sign and a layer whose maps the page holds, and that sign."""
    last = data["positions"][-1]
    for node in data["graphs"]["forward"]["nodes"]:
        signs = [s["key"] for s in data["vital_signs"]
                 if isinstance(last["vitals"].get(node["id"], {}).get(s["key"]), (int, float))]
        if node["layer"] in last["maps"] and node["layer"] in last["explain"] and signs:
            return node["id"], signs[0]
    raise AssertionError("no node with maps, an explanation and a vital sign in the data")


def shown_value(driver) -> float:
    return float(css(driver, "#node-value").get_attribute("data-value"))


def test_page_opens_without_console_errors(page):
    assert every(page, "#graph .node")
    assert console_errors(page) == []


def test_a_node_shows_its_maps_kernels_checks_and_value(page, page_data):
    node, key = chosen_node(page_data)
    layer = next(n["layer"] for n in page_data["graphs"]["forward"]["nodes"] if n["id"] == node)
    last = page_data["positions"][-1]
    css(page, f'#graph .node[data-node="{node}"]').click()
    maps = every(page, f'.map[data-layer="{layer}"][data-kind="maps"]')
    assert [m.get_attribute("src") for m in maps] == last["maps"][layer]["png"]
    assert len(every(page, f'.map[data-layer="{layer}"][data-kind="deltas"]')) == \
        len(last["deltas"].get(layer, {"png": []})["png"])
    assert shown_value(page) == last["vitals"][node][key]
    params = page_data["layers"][layer]["params"]
    badges = {b.get_attribute("data-param"): b.get_attribute("data-ok") for b in every(page, ".badge")}
    assert badges == {p: str(bool(page_data["gradient_checks"][p]["ok"])).lower()
                      for p in params if p in page_data["gradient_checks"]}
    kernels = [p for p in params if p in last["kernels"]]
    assert len(every(page, ".kernel")) == sum(len(last["kernels"][p]["png"]) for p in kernels)
    assert console_errors(page) == []


def test_the_slider_shows_each_positions_replayed_values(page, page_data):
    from selenium.webdriver.common.keys import Keys
    node, key = chosen_node(page_data)
    layer = next(n["layer"] for n in page_data["graphs"]["forward"]["nodes"] if n["id"] == node)
    css(page, f'#graph .node[data-node="{node}"]').click()
    slider = css(page, "#slider")
    seen = []
    for i, keys in [(0, Keys.HOME), (1, Keys.ARROW_RIGHT), (len(page_data["positions"]) - 1, Keys.END)]:
        slider.send_keys(keys)
        position = page_data["positions"][i]
        assert css(page, "#step-label").get_attribute("data-step") == str(position["step"])
        assert f'epoch {position["epoch"]:.3f}' in css(page, "#step-label").text
        assert shown_value(page) == position["vitals"][node][key]
        assert css(page, f'.map[data-layer="{layer}"][data-map="0"]').get_attribute("src") == \
            position["maps"][layer]["png"][0]
        seen.append(shown_value(page))
    assert len(set(seen)) > 1, "the shown value did not change along the slider"


def test_the_toggle_shows_the_backward_graph(page, page_data):
    forward = {n.get_attribute("data-node") for n in every(page, "#graph .node")}
    assert forward == {n["id"] for n in page_data["graphs"]["forward"]["nodes"]}
    css(page, "#pass-toggle").click()
    assert css(page, "#graph svg").get_attribute("data-pass") == "backward"
    backward = {n.get_attribute("data-node") for n in every(page, "#graph .node")}
    assert backward == {n["id"] for n in page_data["graphs"]["backward"]["nodes"]}
    css(page, "#pass-toggle").click()
    assert css(page, "#graph svg").get_attribute("data-pass") == "forward"


def test_another_vital_sign_recolours_the_nodes(page, page_data):
    from selenium.webdriver.support.ui import Select
    last = page_data["positions"][-1]

    def colours():
        return {n.get_attribute("data-node"): n.get_attribute("data-color")
                for n in every(page, "#graph .node")}
    before = colours()
    other = page_data["vital_signs"][1]["key"]
    Select(css(page, "#vital-select")).select_by_value(other)
    after = colours()
    assert before != after
    for group in every(page, "#graph .node"):
        value = last["vitals"].get(group.get_attribute("data-node"), {}).get(other)
        shown = group.get_attribute("data-value")
        assert (float(shown) if shown else None) == (value if isinstance(value, (int, float)) else None)
    labels = [t.text for t in every(page, "#legend .tick")]
    assert len(labels) == 5 and len(set(labels)) > 1


def test_a_feature_map_shows_how_it_was_computed(page, page_data):
    node, _ = chosen_node(page_data)
    layer = next(n["layer"] for n in page_data["graphs"]["forward"]["nodes"] if n["id"] == node)
    index, explained = next(iter(page_data["positions"][-1]["explain"][layer].items()))
    css(page, f'#graph .node[data-node="{node}"]').click()
    css(page, f'.map[data-layer="{layer}"][data-kind="maps"][data-map="{index}"]').click()
    assert css(page, "#tab-explain").is_displayed()
    assert float(css(page, "#explain-value").get_attribute("data-value")) == explained["value"]
    results = [float(r.get_attribute("data-value")) for r in every(page, ".step-result")]
    assert results == [s["result"] for s in explained["steps"] if "result" in s]
    assert f'({explained["pixel"][0]}, {explained["pixel"][1]})' in css(page, "#tab-explain").text


def test_a_confusion_cell_shows_its_images(page, page_data):
    css(page, '#tabs button[data-tab="training"]').click()
    cell, images = next((k, v) for k, v in page_data["confusion"]["images"].items() if v)
    true, pred = cell.split(",")
    css(page, f'#confusion td[data-true="{true}"][data-pred="{pred}"]').click()
    shown = every(page, "#confusion-images img")
    assert [int(i.get_attribute("data-index")) for i in shown] == [i["index"] for i in images]
    assert css(page, f'#confusion td[data-true="{true}"][data-pred="{pred}"]').text == \
        str(page_data["confusion"]["matrix"][int(true)][int(pred)])
    assert every(page, "#curve-error polyline, #curve-error circle")
    assert console_errors(page) == []


def test_screenshot_of_a_node_with_its_maps(page, page_data):
    """docs/images/explorer.png, which README shows: on a laptop's screen, the op of the
    layer with a connection table (LeNet-5's C3) chosen, its maps and kernels shown."""
    layers = page_data["layers"]
    node = next(n["id"] for n in page_data["graphs"]["forward"]["nodes"] if n["op"] and
                len({len(row) for row in layers.get(n["layer"], {}).get("connections") or []}) > 1)
    page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                         {"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": False})
    opened(page, page.current_url)  # drawn again at this size: wait for it, as on any load
    css(page, f'#graph .node[data-node="{node}"]').click()
    from PIL import Image
    with Image.open(io.BytesIO(page.get_screenshot_as_png())) as shot:
        assert shot.size == (1366, 768)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shot.convert("RGB").quantize(256).save(SCREENSHOT, optimize=True)  # a third of the size
    assert console_errors(page) == []


def test_a_delta_map_and_a_unit_show_how_they_were_computed(page, page_data):
    from selenium.webdriver.common.action_chains import ActionChains
    last = page_data["positions"][-1]
    node, _ = chosen_node(page_data)
    layer = next(n["layer"] for n in page_data["graphs"]["forward"]["nodes"] if n["id"] == node)
    css(page, f'#graph .node[data-node="{node}"]').click()
    css(page, f'.map[data-layer="{layer}"][data-kind="deltas"][data-map="0"]').click()
    assert float(css(page, "#explain-value").get_attribute("data-value")) == \
        last["explain_delta"][layer]["0"]["value"]
    units = next(name for name, maps in last["maps"].items() if "values" in maps and name in last["explain"])
    unit_node = next(n["id"] for n in page_data["graphs"]["forward"]["nodes"] if n["layer"] == units)
    css(page, '#tabs button[data-tab="node"]').click()
    css(page, f'#graph .node[data-node="{unit_node}"]').click()
    strip = css(page, f'.strip[data-layer="{units}"][data-kind="maps"]')
    ActionChains(page).move_to_element_with_offset(strip, -strip.size["width"] // 2 + 2, 0).click().perform()
    assert css(page, "#explain-title").text.startswith(f"{units} feature map 0 ")
    assert float(css(page, "#explain-value").get_attribute("data-value")) == last["explain"][units]["0"]["value"]
    assert console_errors(page) == []


def test_a_diverged_run_names_its_first_bad_node(browser, page_data, tmp_path):  # noqa: F811
    """The banner shows the divergence record a real diverging run wrote (C's first_bad)."""
    run_dir = tmp_path / "diverged"
    subprocess.run([sys.executable, "-m", "cnngraph", "run", "models/lenet5.cnn", "--data",
                    str(mnist_dir()), "--out", str(run_dir), "--lr", "1e8", "--epochs", "1",
                    *RUN[:4]], cwd=ROOT, capture_output=True, timeout=900)
    record = json.loads((run_dir / "metrics.json").read_text())["divergence"]
    bad = record["first_bad"]
    path = tmp_path / "explore.html"
    path.write_text(render({**page_data, "divergence": record}), encoding="utf-8")
    opened(browser, path.as_uri())
    banner = css(browser, "#divergence")
    assert banner.is_displayed() and record["reason"] in banner.text
    assert f'the {bad["pass"]} pass, node {bad["node"]}' in banner.text
    assert f'global step {bad["global_step"]}' in banner.text
    assert all(i["name"] in banner.text for i in bad["inputs"])
    css(browser, f'#first-bad a[data-node="{bad["node"]}"]').click()
    assert css(browser, "#node-title").text == bad["node"]
    assert console_errors(browser) == []


def test_a_map_explained_elsewhere_offers_the_jump_and_it_works(page, page_data):
    """A map whose computation the page holds at some positions only: at one without it,
    the computation panel offers the nearest that has it; the jump moves the slider there
    and shows that position's computation, the value the data holds."""
    from selenium.webdriver.common.keys import Keys
    positions = page_data["positions"]
    layer, index, at = next((layer, j, i) for layer in ("C3", "C5", "S4")
                            for j in positions[-1]["explain"][layer]
                            for i, p in enumerate(positions) if j not in p["explain"][layer])
    node = next(n["id"] for n in page_data["graphs"]["forward"]["nodes"] if n["layer"] == layer)
    slider = css(page, "#slider")
    slider.send_keys(Keys.HOME)
    for _ in range(at):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert css(page, "#step-label").get_attribute("data-step") == str(positions[at]["step"])
    css(page, f'#graph .node[data-node="{node}"]').click()
    if "values" in positions[at]["maps"][layer]:  # 1x1 maps: a strip of units, clicked by offset
        from selenium.webdriver.common.action_chains import ActionChains
        strip = css(page, f'.strip[data-layer="{layer}"][data-kind="maps"]')
        units = len(positions[at]["maps"][layer]["values"])
        width = strip.size["width"]
        ActionChains(page).move_to_element_with_offset(
            strip, int((int(index) + 0.5) * width / units) - width // 2, 0).click().perform()
    else:
        css(page, f'.map[data-layer="{layer}"][data-kind="maps"][data-map="{index}"]').click()
    assert css(page, "#explain-title").text.startswith(f"{layer} feature map {index} ")
    assert not every(page, "#explain-value")
    jump = css(page, "#explain-jump")
    target = int(jump.get_attribute("data-pos"))
    assert index in positions[target]["explain"][layer]
    offered = {int(b.get_attribute("data-pos")) for b in every(page, ".jumps button")}
    assert offered == {i for i, p in enumerate(positions) if index in p["explain"][layer]}
    jump.click()
    assert css(page, "#step-label").get_attribute("data-step") == str(positions[target]["step"])
    assert css(page, "#slider").get_attribute("value") == str(target)
    assert float(css(page, "#explain-value").get_attribute("data-value")) == \
        positions[target]["explain"][layer][index]["value"]
    assert console_errors(page) == []
