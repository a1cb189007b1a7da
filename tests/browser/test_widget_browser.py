"""The widget in a real browser: strokes of every tool and polarity on every view, the overlay's
pixels, undo/redo, errors, queued prompts, navigation, objects, and a page reload.

The tests share one notebook (module scope) and run in file order; each asserts on the kernel's
state (read from the autosave the kernel writes in the background after every change, once it
describes the page's label version) and on the page.
"""

from __future__ import annotations

import numpy as np
import pytest

from nni_widget.data import sample_labels, sample_volume

from .conftest import label_summary

pytestmark = pytest.mark.browser

TOOLS = ("point", "box", "lasso", "scribble")
AXES = (0, 1, 2)


@pytest.fixture(scope="module")
def truth():
    return sample_labels()


@pytest.fixture(scope="module")
def image():
    return sample_volume().array


def _slice_rc(axis):
    return [a for a in range(3) if a != axis]


def _object_on_slice(truth, label, axis):
    """Slice index through the object's centre and the object's (row, col) extent there."""
    m = truth == label
    centre = np.argwhere(m).mean(0).round().astype(int)
    index = int(centre[axis])
    plane = np.take(m, index, axis=axis)
    rr, cc = np.nonzero(plane)
    ra, ca = _slice_rc(axis)
    return index, (int(centre[ra]), int(centre[ca])), (rr.min(), rr.max(), cc.min(), cc.max())


def _stroke_points(tool, centre, extent):
    r, c = centre
    r0, r1, c0, c1 = extent
    if tool == "point":
        return [(r, c)]
    if tool == "box":
        return [(r0 - 1, c0 - 1), (r1 + 1, c1 + 1)]
    if tool == "lasso":
        return [(r0 - 1, c), (r, c1 + 1), (r1 + 1, c), (r, c0 - 1), (r0 - 1, c + 0.5)]
    return [(r - 2, c - 2), (r, c), (r + 2, c + 1)]


def _assert_views_match_kernel(nb, views=(0, 1)):
    nb.wait_idle()
    expected = label_summary(nb.kernel_labels(sample_volume().shape))
    for k in views:
        nb.wait_idle(k)
        got = nb.browser_label_summary(k)
        assert got == expected, f"view {k}: the page's label map differs from the kernel's"
    return expected


def _click_object(nb, truth, label=2):
    """A positive click at object ``label``'s centre on the axial view; waits for the kernel to
    hold it and returns the clicked (row, col)."""
    n = nb.n_prompts()
    index, (r, c), _ = _object_on_slice(truth, label, 0)
    nb.set_slice(0, index)
    nb.choose("point", positive=True)
    nb.stroke(0, [(r, c)])
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n + 1, what="the prompt")
    return r, c


def _gray(px):
    return px[0] == px[1] == px[2]


def test_views_show_the_volume_with_window_level(notebook, image):
    nb = notebook
    for k in (0, 1):
        for axis in AXES:
            assert nb.view(axis, k).get_attribute("data-loaded") == "1"
    # the displayed grey value is the kernel's voxel value through the browser's window/level
    level, width = nb.js("root.__nni.model.get('window')")
    pos = nb.js("host.model.get('position')")
    for axis in AXES:
        ra, ca = _slice_rc(axis)
        for r, c in [(10, 10), (30, 40), (40, 50)]:
            idx = [0, 0, 0]
            idx[axis], idx[ra], idx[ca] = pos[axis], r, c
            v = float(image[tuple(idx)])
            want = np.clip((v - (level - width / 2)) / width * 255, 0, 255)
            px = nb.js("host.views[arg[0]].pixelAt(arg[1], arg[2])", [axis, r, c])
            assert _gray(px) and abs(px[0] - want) <= 1.0, (axis, r, c, px, want)


def test_every_tool_and_polarity_on_every_view(notebook, truth):
    nb = notebook
    labels = [1, 2, 3]
    for axis, label in zip(AXES, labels):
        if axis > 0:
            n_obj = len(nb.wait_saved()["objects"])
            nb.page.locator(nb.root_sel()).locator("button[data-action='new']").click()
            nb.wait_kernel(lambda s, n=n_obj: len(s["objects"]) == n + 1, what="a new object")
        index, centre, extent = _object_on_slice(truth, label, axis)
        for tool in TOOLS:
            for positive in (True, False):
                nb.set_slice(axis, index)
                # negative strokes: the toggle for clicks and boxes, the Shift modifier for the others
                use_shift = not positive and tool in ("lasso", "scribble")
                nb.choose(tool, positive=positive or use_shift)
                n = nb.n_prompts()
                if positive:
                    pts = _stroke_points(tool, centre, extent)
                else:  # a small stroke on the object's edge
                    r0, r1, c0, c1 = extent
                    pts = _stroke_points(tool, (r1, c1), (r1 - 2, r1 + 1, c1 - 2, c1 + 1))
                nb.stroke(axis, pts, shift=use_shift)
                s = nb.wait_kernel(lambda s, n=n: sum(len(o["prompts"]) for o in s["objects"]) == n + 1,
                                   what=f"{tool} {'+' if positive else '-'} on axis {axis}")
                active = s["objects"][s["active_index"]]
                p = active["prompts"][-1]
                assert p["kind"] == tool and p["positive"] == positive
                if tool == "point":
                    assert round(p["zyx"][axis]) == index
                elif tool == "box":
                    assert p["bbox"][axis] == [index, index + 1]
                else:
                    assert p["axis"] == axis and p["index"] == index
                expected = _assert_views_match_kernel(nb)
        # the overlay shows the kernel's result on the drawn slice: tinted inside, grey outside
        kl = nb.kernel_labels(truth.shape)
        plane = np.take(kl, index, axis=axis)
        obj_id = s["objects"][s["active_index"]]["id"]
        inside = np.argwhere(plane == obj_id)
        outside = np.argwhere(plane == 0)
        assert len(inside), f"the {axis} object is empty after its prompts"
        nb.set_slice(axis, index)
        for r, c in inside[:: max(1, len(inside) // 5)][:5]:
            assert not _gray(nb.js("host.views[arg[0]].pixelAt(arg[1], arg[2])", [axis, int(r), int(c)]))
        for r, c in outside[:: max(1, len(outside) // 5)][:5]:
            assert _gray(nb.js("host.views[arg[0]].pixelAt(arg[1], arg[2])", [axis, int(r), int(c)]))
    assert len(expected) >= 1


def test_undo_redo_with_buttons_and_keys(notebook):
    nb = notebook
    root = nb.page.locator(nb.root_sel())
    n = nb.n_prompts()
    before = label_summary(nb.kernel_labels((64, 96, 96)))
    root.locator("button[data-action='undo']").click()
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n - 1, what="undo")
    _assert_views_match_kernel(nb)
    nb.view(0).focus()
    nb.page.keyboard.press("y")  # redo
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n, what="redo")
    assert _assert_views_match_kernel(nb) == before
    nb.page.keyboard.press("Control+z")
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n - 1, what="ctrl+z")
    root.locator("button[data-action='redo']").click()
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n, what="redo button")
    assert _assert_views_match_kernel(nb) == before


def test_bad_prompt_and_failed_prediction_leave_the_widget_usable(notebook, truth):
    nb = notebook
    root = nb.page.locator(nb.root_sel())
    n = nb.n_prompts()
    before = label_summary(nb.kernel_labels(truth.shape))
    # a click beside the image (the coronal view has margins left and right)
    nb.choose("point", positive=True)
    nb.stroke(1, [(30, -4)])
    nb.page.wait_for_function("() => document.querySelector('.nni-root').dataset.error === '1'")
    assert "outside" in root.locator(".nni-error").inner_text()
    root.locator(".nni-dismiss").click()
    nb.page.wait_for_function("() => document.querySelector('.nni-root').dataset.error === '0'")
    # a prediction that raises in the kernel
    (nb.root / "FAIL_NEXT").write_text("")
    index, centre, _ = _object_on_slice(truth, 4, 0)
    nb.set_slice(0, index)
    nb.stroke(0, [centre])
    nb.page.wait_for_function("() => document.querySelector('.nni-root').dataset.error === '1'", timeout=60_000)
    assert "injected failure" in root.locator(".nni-error").inner_text()
    nb.wait_idle()
    assert nb.n_prompts() == n and label_summary(nb.kernel_labels(truth.shape)) == before
    assert not (nb.root / "FAIL_NEXT").exists()
    # ... and the next prompt works
    nb.stroke(0, [centre])
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n + 1, what="prompt after failure")
    nb.page.wait_for_function("() => document.querySelector('.nni-root').dataset.error === '0'")
    _assert_views_match_kernel(nb)


def test_prompts_drawn_during_a_prediction_are_queued_not_lost(notebook, truth):
    nb = notebook
    root = nb.page.locator(nb.root_sel())
    n = nb.n_prompts()
    index, (r, c), _ = _object_on_slice(truth, 4, 0)
    nb.set_slice(0, index)
    nb.choose("point", positive=True)
    (nb.root / "SLOW").write_text("")
    try:
        for dr in (0, 1, -1):
            nb.stroke(0, [(r + dr, c)])
        nb.page.wait_for_function("() => document.querySelector('.nni-busy').textContent.includes('queued')",
                                  timeout=30_000)
        assert "running" in root.locator(".nni-busy").inner_text()
        nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n + 3, timeout=120,
                       what="three queued prompts")
    finally:
        (nb.root / "SLOW").unlink(missing_ok=True)
    _assert_views_match_kernel(nb)


def test_navigation_wheel_keys_window_level_layout(notebook):
    nb = notebook
    page = nb.page
    root = page.locator(nb.root_sel())
    nb.choose("navigate")
    view = nb.view(0)
    box = view.locator("canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    s0 = int(view.get_attribute("data-slice"))
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -100)  # not focused: the page scrolls, the slice stays
    page.wait_for_timeout(300)
    assert int(view.get_attribute("data-slice")) == s0
    # a navigate click focuses the view and moves the crosshair of the other views
    r, c = 20, 30
    x, y = nb.client(0, r, c)
    page.mouse.click(x, y)
    pos = nb.js("host.model.get('position')")
    assert pos[1:] == [r, c]
    assert int(nb.view(1).get_attribute("data-slice")) == r and int(nb.view(2).get_attribute("data-slice")) == c
    x, y = nb.client(0, r, c)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -100)
    page.wait_for_function(f"() => document.querySelector(\".nni-view[data-axis='0']\").dataset.slice === '{s0 + 1}'")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"() => document.querySelector(\".nni-view[data-axis='0']\").dataset.slice === '{s0 - 1}'")
    # the kernel follows the browser's slice
    assert nb.js("host.model.get('position')")[0] == s0 - 1
    # zoom with Ctrl+wheel, reset with R
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    assert nb.js("host.views[0].zoom") > 1
    page.keyboard.press("r")
    assert nb.js("host.views[0].zoom") == 1
    # window/level: right-drag widens the window, presets set it
    w0 = nb.js("host.model.get('window')")[1]
    page.mouse.move(cx, cy)
    page.mouse.down(button="right")
    page.mouse.move(cx + 60, cy, steps=4)
    page.mouse.up(button="right")
    assert nb.js("host.model.get('window')")[1] > w0
    root.locator("select[title='Window preset']").select_option("bone")
    assert nb.js("host.model.get('window')") == [400, 1800]
    assert root.locator("input[title='Width']").input_value() == "1800"
    # keyboard tool and polarity shortcuts (keys go to the focused view)
    view.focus()
    page.keyboard.press("b")
    page.keyboard.press("n")
    assert root.get_attribute("data-tool") == "box" and root.get_attribute("data-positive") == "0"
    page.keyboard.press("n")
    # one large view
    root.locator("select[title='Layout']").select_option("sagittal")
    page.wait_for_timeout(200)
    assert not nb.view(0).is_visible() and nb.view(2).is_visible()
    assert nb.view(2).locator("canvas").bounding_box()["width"] > box["width"] * 1.5
    root.locator("select[title='Layout']").select_option("three")
    page.wait_for_timeout(200)
    assert nb.view(0).is_visible()


def test_overlay_opacity_and_outline(notebook, truth):
    from scipy import ndimage

    nb = notebook
    root = nb.page.locator(nb.root_sel())
    kl = nb.kernel_labels((64, 96, 96))
    if not kl.any():  # run on its own: segment an object first
        _click_object(nb, truth)
        nb.wait_idle()
        kl = nb.kernel_labels((64, 96, 96))
    z = int(np.argmax((kl > 0).sum((1, 2))))  # the axial slice with the most labels
    nb.set_slice(0, z)
    plane = kl[z]
    lab = int(np.bincount(plane[plane > 0]).argmax())
    inner = np.argwhere(ndimage.binary_erosion(plane == lab, iterations=2))
    edge = np.argwhere((plane == lab) & ~ndimage.binary_erosion(plane == lab))
    assert len(inner) and len(edge)
    r, c = (int(v) for v in inner[len(inner) // 2])
    er, ec = (int(v) for v in edge[0])
    px = lambda r, c: nb.js("host.views[0].pixelAt(arg[0], arg[1])", [r, c])  # noqa: E731
    assert not _gray(px(r, c))
    root.locator("input[title='Outline instead of fill']").check()
    nb.page.wait_for_function("() => document.querySelector('.nni-root').__nni.model.get('outline') === true")
    assert _gray(px(r, c)) and not _gray(px(er, ec))
    root.locator("input[title='Outline instead of fill']").uncheck()
    root.locator("input[title='Overlay opacity']").fill("0")
    nb.page.wait_for_function("() => document.querySelector('.nni-root').__nni.model.get('opacity') === 0")
    assert _gray(px(r, c))
    root.locator("input[title='Overlay opacity']").fill("0.5")
    nb.page.wait_for_function("() => document.querySelector('.nni-root').__nni.model.get('opacity') === 0.5")
    assert not _gray(px(r, c))


def test_mirroring_switch_in_the_toolbar(notebook, truth):
    nb = notebook
    root = nb.page.locator(nb.root_sel())
    box = root.locator("[data-role='mirroring'] input")
    status = "() => document.querySelector('.nni-status').textContent"
    assert box.is_checked()  # the bundled model asks for test-time mirroring
    box.uncheck()
    # the kernel's worker applies the switch and says so
    nb.page.wait_for_function(f"() => ({status})().startsWith('mirroring off')", timeout=30_000)
    n = nb.n_prompts()
    r, c = _click_object(nb, truth)
    nb.page.wait_for_function(f"() => / ms/.test(({status})())", timeout=30_000)
    assert "mirrored" not in root.locator(".nni-status").inner_text()
    box.check()
    # on this CPU kernel: mirrored where a prompt needs no zoom-out
    nb.page.wait_for_function(f"() => ({status})().startsWith('mirroring on for prompts that need no zoom-out')",
                              timeout=30_000)
    nb.stroke(0, [(r + 1, c)])
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n + 2, what="the second prompt")
    _assert_views_match_kernel(nb)


def test_objects_new_rename_select_delete(notebook):
    nb = notebook
    page = nb.page
    root = page.locator(nb.root_sel())
    n_obj = len(nb.wait_saved()["objects"])
    root.locator("button[data-action='new']").click()
    s = nb.wait_kernel(lambda s: len(s["objects"]) == n_obj + 1, what="new object")
    new_id = s["objects"][-1]["id"]
    row = root.locator(f".nni-obj[data-id='{new_id}']")
    row.locator(".nni-obj-name").dblclick()
    inp = root.locator(".nni-rename")
    inp.fill("liver")
    inp.press("Enter")
    nb.wait_kernel(lambda s: s["objects"][-1]["name"] == "liver", what="rename")
    first = s["objects"][0]["id"]
    root.locator(f".nni-obj[data-id='{first}']").click()
    page.wait_for_function(f"() => document.querySelector('.nni-root').dataset.active === '{first}'")
    # the second view follows
    page.wait_for_function(
        f"() => document.querySelectorAll('.nni-root')[1].dataset.active === '{first}'")
    # reset clears the selected object's prompts and mask (undoable)
    root.locator("button[data-action='reset']").click()
    nb.wait_kernel(lambda s: next(o for o in s["objects"] if o["id"] == first)["bounds"] is None
                   and not next(o for o in s["objects"] if o["id"] == first)["prompts"], what="reset")
    _assert_views_match_kernel(nb)
    root.locator(f".nni-obj[data-id='{first}'] button[data-action='delete']").click()
    nb.wait_kernel(lambda s: len(s["objects"]) == n_obj and all(o["id"] != first for o in s["objects"]),
                   what="delete")
    _assert_views_match_kernel(nb)


def test_a_large_box_shows_a_coarse_preview_while_it_refines(notebook):
    """A box over the whole axial slice zooms out and refines several boxes (9 with the bundled model):
    the page shows the coarse answer as a dotted outline before the refined patch replaces it."""
    nb = notebook
    root = nb.page.locator(nb.root_sel())
    n = nb.n_prompts()
    before = label_summary(nb.kernel_labels((64, 96, 96)))
    nb.set_slice(0, 32)
    nb.choose("box", positive=True)
    (nb.root / "SLOW").write_text("")  # one second per network pass: refinement takes seconds
    try:
        nb.stroke(0, [(2, 2), (93, 93)])
        nb.page.wait_for_function("() => document.querySelector('.nni-root').dataset.preview === '1'",
                                  timeout=60_000)
        assert "running" in root.locator(".nni-busy").inner_text()  # shown while the kernel still works
    finally:
        (nb.root / "SLOW").unlink(missing_ok=True)
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n + 1, timeout=120,
                   what="the large box")
    nb.page.wait_for_function("() => document.querySelector('.nni-root').dataset.preview === '0'",
                              timeout=30_000)
    _assert_views_match_kernel(nb)
    root.locator("button[data-action='undo']").click()
    nb.wait_kernel(lambda s: sum(len(o["prompts"]) for o in s["objects"]) == n, what="undo of the large box")
    assert _assert_views_match_kernel(nb) == before


def test_reload_renders_the_current_state(notebook):
    nb = notebook
    expected = label_summary(nb.kernel_labels((64, 96, 96)))
    n_obj = len(nb.wait_saved()["objects"])
    # the notebook (with its widget-view outputs) is saved, then the page reloaded: the widget view is
    # rebuilt from the live kernel and asks it for the whole current label map
    nb.page.click(".lm-MenuBar-itemLabel:text-is('File')")
    nb.page.click(".lm-Menu-itemLabel:text-matches('^Save( Notebook)?$')")
    nb.page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=20_000)
    nb.page.reload()
    nb.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    nb.wait_ready()
    assert nb.browser_label_summary(0) == expected
    assert int(nb.page.locator(nb.root_sel()).get_attribute("data-objects")) == n_obj
    assert nb.page.locator(nb.root_sel()).get_attribute("data-error") == "0"


def test_jupyter_notebook_7_shows_the_same_widget(notebook, lab, browser):
    """The notebook saved above, opened in Jupyter Notebook 7 on the same server and kernel."""
    pytest.importorskip("notebook", reason="Jupyter Notebook 7 (pip install notebook) serves /notebooks/")
    expected = label_summary(notebook.kernel_labels((64, 96, 96)))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab['url']}/notebooks/widget.ipynb?token=nni-widget-test")
        page.wait_for_function("document.querySelectorAll(\".nni-root[data-ready='1']\").length >= 1",
                               timeout=120_000)
        page.wait_for_function("() => document.querySelector('.nni-root').dataset.labelVersion !== undefined"
                               " && document.querySelector(\".nni-view[data-axis='0']\").dataset.loaded === '1'",
                               timeout=60_000)
        nb7 = type(notebook)(page, notebook.root)
        assert nb7.browser_label_summary(0) == expected
    finally:
        page.close()
