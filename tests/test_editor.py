"""The face editor: its request checks and queues, syntheses equal to the synthesis stage's, the
HTTP API and the CLI; and (marked `browser`) the page in headless chromium: a painted stroke
changes each model's face where it was painted, a photo is parsed, and bad uploads get the
page's error. The run is made here: two tiny models trained a few steps on procedural faces."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from seeded_parser import write_seeded_weights
from support import REPO, fingerprint, keep_run, kept_run

from pipeline.config import ModelConfig, resolve
from pipeline.data.procedural import write_faces
from pipeline.data.split import SplitRow, write_split
from pipeline.editor import backend
from pipeline.editor.backend import (
    MAX_IMAGE_PIXELS,
    Busy,
    Editor,
    EditorRequestError,
    UnknownName,
    WorkQueue,
    checked_image,
    decode_label_map,
    label_grid,
    read_test_faces,
)
from pipeline.editor.server import MAX_REQUEST_BYTES, EditorServer
from pipeline.errors import PipelineError
from pipeline.images import ImageReadError, load_rgb
from pipeline.labelmaps import CLASS_NAMES, CLASSES, read_label
from pipeline.pairs import resize_labels
from pipeline.parse.manifest import write_manifest
from pipeline.synthesize import synthesize
from pipeline.train import train

CPU = torch.device("cpu")
MODELS = ("spade", "spade_vae")
PARSER_SIZE = 64  # the parser's input side here: small, and unlike the test label maps' 128
HAIR = CLASS_NAMES.index("hair")


def tiny_model(name: str) -> ModelConfig:
    # 10x the default learning rates: after 30 steps a face depends visibly on its label map
    # (after 6 at the defaults a painted stroke changes it by a tenth of a grey level).
    settings = {"resolution": 64, "batch_size": 4, "iterations": 30, "lr_G": 1e-3, "lr_D": 1e-3,
                "decay_start": 10_000, "checkpoint_every": 10_000, "sample_every": 10_000, "vgg": False,
                "workers": 1, "device": "cpu"}
    return ModelConfig.from_config(resolve({"training": settings, "models": {name: {"ngf": 8, "ndf": 8}}}), name)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The networks are tiny: one thread is fastest for them, and beside another busy process
    two threads on two cores spend most of their time waiting for each other (30x slower here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_run(root: Path) -> None:
    faces = root / "faces"
    ids = write_faces(faces, range(12))
    images = [str(faces / "images" / f"{image_id}.png") for image_id in ids]
    labels = [str(faces / "labels" / f"{image_id}.png") for image_id in ids]
    test = 4
    splits = ["train"] * (len(ids) - test) + ["test"] * test
    relative = [[str(Path(path).relative_to(root)) for path in paths] for paths in (images, labels)]
    write_manifest(zip(ids, splits, *relative), root / "results" / "labels" / "shards" / "0.csv")
    for name in MODELS:
        train(tiny_model(name), images[:-test], labels[:-test], root / "results" / "models" / name)
    write_seeded_weights(root / "resources" / "weights" / "parsing_bisenet.pth")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run's results folder: spade and spade_vae trained on procedural faces (128x128 label
    maps), a parsing manifest whose test faces are four others (its paths relative to the run's
    directory, as the workflow writes them; the editor runs from elsewhere), and, where the
    editor looks for them by default, seeded parser weights. Made once per checkout, code and
    machine, and kept (tests/support.py: kept_run); each session works on its own copy."""
    key = fingerprint("editor", MODELS, made_by=Path(__file__))
    if not kept_run("editor", key).exists():
        made = tmp_path_factory.mktemp("made")
        make_run(made)
        keep_run("editor", key, made, ["faces", "results", "resources"])
    root = tmp_path_factory.mktemp("run")
    shutil.copytree(kept_run("editor", key), root, dirs_exist_ok=True)
    return root / "results"


@pytest.fixture(scope="module")
def editor(run) -> Editor:
    return Editor.load(run, CPU, run.parent / "resources" / "weights" / "parsing_bisenet.pth", PARSER_SIZE)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def style_bytes(run: Path, index: int = -1) -> bytes:
    return sorted((run.parent / "faces" / "images").glob("*.png"))[index].read_bytes()


# --- the core ------------------------------------------------------------------------------


def test_the_queue_runs_one_job_at_a_time_in_arrival_order_and_refuses_past_its_length():
    queue = WorkQueue("spade", max_waiting=2)
    release, order, running, most_running = threading.Event(), [], [], []

    def job(name: str) -> None:
        with queue.turn():
            running.append(name)
            most_running.append(len(running))
            release.wait(10)
            order.append(name)
            running.remove(name)

    threads = []
    for name in ("first", "second", "third"):
        threads.append(threading.Thread(target=job, args=(name,)))
        threads[-1].start()
        time.sleep(0.2)  # so that they queue in this order
    with pytest.raises(Busy, match="spade: 2 requests already waiting; try again"):
        with queue.turn():
            pass
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first", "second", "third"] and max(most_running) == 1
    with queue.turn():  # free again
        pass


def test_label_maps_are_checked_for_side_and_classes():
    np.testing.assert_array_equal(label_grid(bytes([1, 2] * 128), 16), np.array([1, 2] * 128).reshape(16, 16))
    with pytest.raises(EditorRequestError, match="painted label map: class index 200 out of range 0-18"):
        label_grid(bytes([200] * 256), 16)
    with pytest.raises(EditorRequestError, match=r"255 bytes for a 16x16 map \(256 expected\)"):
        label_grid(bytes(255), 16)
    with pytest.raises(EditorRequestError, match="8x8 pixels; the editor takes square label maps of 16 to 2048"):
        label_grid(bytes(64), 8)

    labels = np.zeros((32, 32), np.uint8)
    np.testing.assert_array_equal(decode_label_map(png(labels)), labels)
    labels[3, 4] = 200
    with pytest.raises(PipelineError, match="uploaded label map: class index 200 out of range 0-18"):
        decode_label_map(png(labels))
    with pytest.raises(PipelineError, match="uploaded label map: 32x16 pixels; the editor takes square"):
        decode_label_map(png(np.zeros((16, 32), np.uint8)))
    with pytest.raises(PipelineError, match=r"uploaded label map: not a label map \(image mode RGB"):
        decode_label_map(png(np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(ImageReadError, match="uploaded label map: not a readable image"):
        decode_label_map(b"class,index\n1,2\n")


def test_images_past_the_pixel_limit_are_refused_from_their_header():
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    large = png(np.zeros((side, side), np.uint8))
    with pytest.raises(EditorRequestError, match=f"style image: {side}x{side} pixels, more than the editor takes"):
        checked_image(large, "style image")
    with pytest.raises(ImageReadError, match="style image: not a readable image"):
        checked_image(b"GIF89a, but not really", "style image")
    truncated = png(np.zeros((64, 64, 3), np.uint8) + 90)[:-30]  # its header is whole: decoding finds out
    with pytest.raises(ImageReadError, match=r"style image: not a readable image \(image file is truncated"):
        load_rgb(checked_image(truncated, "style image"))


def test_the_editor_lists_the_runs_models_faces_and_parser(editor):
    info = editor.info()
    assert [model["name"] for model in info["models"]] == list(MODELS)
    assert [model["vae"] for model in info["models"]] == [False, True]
    assert [model["noise"] for model in info["models"]] == [False, True]
    assert len(info["faces"]) == 4 and info["parser"]["available"]
    assert [entry["name"] for entry in info["classes"]] == list(CLASS_NAMES)
    assert info["classes"][1]["color"] == "#%02x%02x%02x" % CLASSES[1].color


def test_each_training_run_of_a_model_is_a_model_of_its_own(run, tmp_path):
    """A second run of spade (training.replicates), here spade's own weights under its name."""
    shutil.copytree(run.parent, tmp_path / "run")  # with the faces the manifest names, relative to it
    results = tmp_path / "run" / "results"
    shutil.copytree(results / "models" / "spade", results / "models" / "spade#1")
    editor = Editor.load(results, CPU, tmp_path / "no_parser.pth", PARSER_SIZE)
    assert list(editor.models) == ["spade", "spade#1", "spade_vae"]
    labels = editor.face_labels(next(iter(editor.faces)))
    np.testing.assert_array_equal(editor.synthesize("spade#1", labels, seed=0), editor.synthesize("spade", labels, seed=0))


def test_the_faces_are_the_current_splits_test_faces_each_once(tmp_path):
    """Shards of an earlier, larger split (here 1.csv) and an earlier shard size (a face of 0.csv
    again in 2.csv) stay on disk; the editor lists the current split's test faces, each once,
    from the lowest shard that has it."""
    results = tmp_path / "results"
    shards = results / "labels" / "shards"

    def rows(ids: list[str], split: str) -> list[tuple[str, str, str, str]]:
        return [(i, split, f"faces/{i}.png", f"results/labels/{i}.png") for i in ids]

    write_manifest(rows(["a", "b"], "train") + rows(["c", "d"], "test"), shards / "0.csv")
    write_manifest(rows(["e"], "train") + rows(["f"], "test"), shards / "1.csv")
    write_manifest([("d", "test", "old/d.png", "results/labels/d.png")], shards / "2.csv")
    # Before a split exists (a results folder copied without it), every shard's, each once.
    assert [face.image_id for face in read_test_faces(results)] == ["c", "d", "f"]
    write_split([SplitRow(i, split, f"faces/{i}.png") for i, split in zip("abcd", ["train", "train", "test", "test"])],
                results / "data" / "split.csv")
    faces = read_test_faces(results)
    assert [face.image_id for face in faces] == ["c", "d"]
    assert faces[1].photo == tmp_path / "faces" / "d.png" and faces[1].labels == tmp_path / "results" / "labels" / "d.png"


def test_a_test_faces_synthesis_is_the_synthesis_stages(editor, run, tmp_path):
    face = editor.faces[next(iter(editor.faces))]
    model = editor.models["spade"]
    synthesize(model.config, model.networks, [face.labels], [tmp_path / "stage.png"], CPU)
    stage = np.asarray(Image.open(tmp_path / "stage.png"))
    np.testing.assert_array_equal(editor.synthesize("spade", editor.face_labels(face.image_id), seed=0), stage)
    # no noise input: the seed changes nothing
    np.testing.assert_array_equal(editor.synthesize("spade", editor.face_labels(face.image_id), seed=5), stage)


def test_a_vae_models_face_follows_the_seed_and_the_style_image(editor, run):
    labels = editor.face_labels(next(iter(editor.faces)))
    faces = {seed: editor.synthesize("spade_vae", labels, seed) for seed in (0, 0, 1)}
    np.testing.assert_array_equal(editor.synthesize("spade_vae", labels, 0), faces[0])
    assert not np.array_equal(faces[0], faces[1])
    styled = [editor.synthesize("spade_vae", labels, 0, style_bytes(run, index)) for index in (-1, -2)]
    assert not np.array_equal(styled[0], faces[0]) and not np.array_equal(styled[0], styled[1])
    with pytest.raises(EditorRequestError, match="spade has no encoder: a style image is for VAE models"):
        editor.synthesize("spade", labels, 0, style_bytes(run))
    with pytest.raises(UnknownName, match="no model 'pix2pixhd' in this run"):
        editor.synthesize("pix2pixhd", labels, 0)
    with pytest.raises(EditorRequestError, match=r"seed -1: out of range 0-2147483647"):
        editor.synthesize("spade_vae", labels, -1)


def test_photos_are_parsed_only_when_the_parser_weights_exist(editor, run, tmp_path):
    labels = editor.parse(style_bytes(run))
    assert labels.shape == (PARSER_SIZE, PARSER_SIZE) and labels.max() < len(CLASSES)
    with pytest.raises(ImageReadError, match="uploaded photo: not a readable image"):
        editor.parse(b"not a photo")

    without = Editor.load(run, CPU, tmp_path / "missing.pth", PARSER_SIZE)
    assert not without.info()["parser"]["available"]
    with pytest.raises(EditorRequestError, match=f"no face parser weights at {tmp_path / 'missing.pth'}"):
        without.parse(style_bytes(run))


# --- HTTP and the CLI ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(editor) -> Iterator[str]:
    with EditorServer(editor, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.url
        server.shutdown()


def request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers or {}), timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def error(answer: tuple[int, bytes]) -> tuple[int, str]:
    return answer[0], json.loads(answer[1])["error"]


def synthesis_body(model: str, labels: np.ndarray, **fields) -> bytes:
    body = {"model": model, "side": labels.shape[0], "labels": base64.b64encode(labels.tobytes()).decode(),
            "seed": 0, "style": None, **fields}
    return json.dumps(body).encode()


def test_the_http_api_serves_the_page_and_answers_with_one_line_errors(server, editor):
    status, page = request(server)
    assert status == 200 and b"/static/editor.js" in page
    assert request(server + "static/editor.js")[0] == request(server + "static/editor.css")[0] == 200
    for path in ("static/backend.py", "static/..%2Fbackend.py", "static/../server.py", "etc/passwd"):
        assert request(server + path)[0] == 404, path
    info = json.loads(request(server + "api/info")[1])
    assert info["max_request_bytes"] == MAX_REQUEST_BYTES and len(info["faces"]) == 4

    face_id = info["faces"][0]
    answer = json.loads(request(f"{server}api/faces/{face_id}/labels")[1])
    labels = np.frombuffer(base64.b64decode(answer["labels"]), np.uint8).reshape(answer["side"], answer["side"])
    np.testing.assert_array_equal(labels, read_label(editor.faces[face_id].labels))
    status, photo = request(f"{server}api/faces/{face_id}/photo")
    assert status == 200 and Image.open(io.BytesIO(photo)).size == (128, 128)
    assert error(request(f"{server}api/faces/nobody/labels")) == (404, "no test face 'nobody' in this run")

    status, body = request(server + "api/synthesize", synthesis_body("spade_vae", labels))
    face = json.loads(body)
    assert status == 200 and face["image"].startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(face["image"].partition(",")[2]))).size == (64, 64)

    assert error(request(server + "api/synthesize", b"{")) [0] == 400
    assert error(request(server + "api/synthesize", synthesis_body("spade", labels, seed="1"))) == (
        400, "synthesis request: 'seed' must be an integer")
    assert error(request(server + "api/synthesize", synthesis_body("spade", np.full_like(labels, 200)))) == (
        400, "painted label map: class index 200 out of range 0-18")
    assert error(request(server + "api/synthesize", synthesis_body("spade", labels, style="@@"))) == (
        400, "style image: not base64 (Only base64 data is allowed)")
    assert error(request(server + "api/synthesize", synthesis_body("nobody", labels)))[0] == 404
    assert error(request(server + "api/style", b"plain text")) == (
        400, "style image: not a readable image (cannot identify image file style image)")
    too_large = {"Content-Length": str(MAX_REQUEST_BYTES + 1)}
    assert error(request(server + "api/parse", b"x", too_large)) == (
        413, "a request of 24.0 MiB; the editor takes at most 24 MiB")


def test_the_editors_parser_follows_parsing_amp(run, monkeypatch):
    """fp16 parsing on CUDA only where asked, as the parse stage does (the CPU always parses in fp32)."""
    made = []
    monkeypatch.setattr(backend, "FaceParser", lambda *args: made.append(args))
    weights = run.parent / "resources" / "weights" / "parsing_bisenet.pth"
    for amp in (True, False):
        Editor.load(run, CPU, weights, PARSER_SIZE, parser_amp=amp)
    assert made == [(weights, PARSER_SIZE, "cpu", True), (weights, PARSER_SIZE, "cpu", False)]


def test_the_cli_says_in_one_line_when_a_results_folder_has_no_models(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.editor", "--results", str(tmp_path), "--device", "cpu"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"{tmp_path / 'models'}: no trained model (*/generator.pt); train one "
                                          "first, e.g. snakemake train_all")


# --- the page in a browser -------------------------------------------------------------------


@contextmanager
def editor_cli(results: Path) -> Iterator[str]:
    """`python -m pipeline.editor` on `results` (any free port, the default parser weights): its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.editor", "--results", str(results), "--port", "0", "--device", "cpu",
         "--parser-size", str(PARSER_SIZE), "--threads", "1"],
        stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)  # drains the pipe
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("face editor at" in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        yield re.search(r"face editor at (\S+)", "".join(lines)).group(1)
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(30) == 0, "".join(lines)


@pytest.fixture(scope="module")
def browser():
    """Headless chromium driven through Debian's chromedriver (Selenium Manager cannot download
    here). Module-scoped, so that a test asking for it before `run` skips before any training."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra: pip install -e '.[test]'")
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # as root (CI) chromium's sandbox cannot start; /dev/shm may be small in a container
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,960"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


CARDS_JS = """return [...document.querySelectorAll('.result')].map(
    f => ({model: f.dataset.model, state: f.dataset.state, version: Number(f.dataset.version),
           image: f.querySelector('img').getAttribute('src')}))"""
CANVAS_JS = """const canvas = document.getElementById('labels');
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let text = '';
for (let start = 0; start < data.length; start += 0x8000)
  text += String.fromCharCode.apply(null, data.subarray(start, start + 0x8000));
return [canvas.width, btoa(text)]"""


def canvas_labels(driver) -> np.ndarray:
    """The class of each canvas pixel, told by its colour."""
    side, encoded = driver.execute_script(CANVAS_JS)
    rgb = np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(side, side, 4)[..., :3].astype(np.int64)
    codes = {(r << 16) | (g << 8) | b: c.index for c in CLASSES for r, g, b in [c.color]}
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return np.vectorize(codes.__getitem__, otypes=[np.uint8])(packed)


def synthesized(driver, after: dict[str, int]) -> dict[str, np.ndarray]:
    """Each model's face, once its synthesis newer than version `after[model]` is done."""
    from selenium.webdriver.support.ui import WebDriverWait

    def done(driver):
        cards = driver.execute_script(CARDS_JS)
        return all(c["state"] == "done" and c["version"] > after[c["model"]] for c in cards) and cards

    cards = WebDriverWait(driver, 120).until(done)
    return {c["model"]: np.asarray(Image.open(io.BytesIO(base64.b64decode(c["image"].partition(",")[2]))))
            for c in cards}


def versions(driver) -> dict[str, int]:
    return {c["model"]: c["version"] for c in driver.execute_script(CARDS_JS)}


def page_error(driver) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element(By.ID, "error")
    WebDriverWait(driver, 60).until(lambda _: box.is_displayed())
    message = driver.find_element(By.ID, "error-text").text
    driver.find_element(By.ID, "error-close").click()
    return message


@pytest.mark.browser
def test_painting_a_stroke_changes_each_models_face_where_it_was_painted(browser, run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    with editor_cli(run) as url:
        browser.get(url)
        # The page opens on the first test face and, with "after each stroke" on, synthesizes it.
        synthesized(browser, {model: 0 for model in MODELS})
        assert "2 models on cpu (spade, spade_vae); 4 test faces." in browser.find_element(By.ID, "status").text
        browser.find_element(By.ID, "auto").click()  # from here on, only the button synthesizes

        browser.find_element(By.ID, "style-file").send_keys(str(run.parent / "faces" / "images" / "face000011.png"))
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "style").is_displayed())
        browser.find_element(By.ID, "synthesize").click()
        before, labels_before = synthesized(browser, versions(browser)), canvas_labels(browser)

        browser.find_element(By.CSS_SELECTOR, f'#palette [data-class="{HAIR}"]').click()
        browser.execute_script("const b = document.getElementById('brush'); b.value = 16;"
                               "b.dispatchEvent(new Event('input'))")
        canvas = browser.find_element(By.ID, "labels")
        stroke = ActionChains(browser).move_to_element_with_offset(canvas, -140, 40).click_and_hold()
        for _ in range(14):
            stroke.move_by_offset(20, 0)
        stroke.release().perform()
        labels_after = canvas_labels(browser)
        painted = labels_after != labels_before
        assert painted.sum() > 1000 and (labels_after[painted] == HAIR).all()

        browser.find_element(By.ID, "synthesize").click()
        after = synthesized(browser, versions(browser))
        for model in MODELS:
            mask = resize_labels(painted.astype(np.uint8), before[model].shape[0]).astype(bool)
            change = np.abs(after[model].astype(int) - before[model].astype(int)).mean(-1)
            inside, outside = change[mask].mean(), change[~mask].mean()
            print(f"{model}: mean change {inside:.1f} inside the stroke, {outside:.1f} outside")
            assert inside > 5 * outside and inside > 3, (model, inside, outside)

        # A photo is parsed into the label map (at the parser's size) and shown beside it.
        browser.find_element(By.ID, "photo-file").send_keys(str(run.parent / "faces" / "images" / "face000000.png"))
        WebDriverWait(browser, 60).until(lambda d: canvas_labels(d).shape == (PARSER_SIZE, PARSER_SIZE))
        assert browser.find_element(By.ID, "photo-image").get_attribute("src").startswith("blob:")

        # Bad uploads: the page shows the server's one-line reason.
        bad_labels = np.zeros((64, 64), np.uint8)
        bad_labels[10:20, 10:20] = 200
        Image.fromarray(bad_labels, "L").save(tmp_path / "class_200.png")
        browser.find_element(By.ID, "label-file").send_keys(str(tmp_path / "class_200.png"))
        assert page_error(browser) == "uploaded label map: class index 200 out of range 0-18"
        (tmp_path / "notes.png").write_text("not an image")
        browser.find_element(By.ID, "style-file").send_keys(str(tmp_path / "notes.png"))
        assert page_error(browser).startswith("style image: not a readable image")
        browser.find_element(By.ID, "photo-file").send_keys(str(tmp_path / "notes.png"))
        assert page_error(browser).startswith("uploaded photo: not a readable image")
        assert canvas_labels(browser).shape == (PARSER_SIZE, PARSER_SIZE)  # the label map is kept
    print(f"browser test: {time.monotonic() - started:.1f} s with the server")
