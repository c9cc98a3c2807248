"""Chapter 07's helpers: deploying a model into site/, building the vendored JavaScript, serving."""
from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from helpers import deploy, export


@pytest.fixture()
def site(tmp_path) -> Path:
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    return tmp_path


def _get(url: str):
    with urllib.request.urlopen(url) as response:
        return response.status, response.headers, response.read()  # headers: case-insensitive


def test_server_sends_mime_types_and_cross_origin_isolation(site):
    files = {"a.wasm": "application/wasm", "a.mjs": "text/javascript", "a.js": "text/javascript",
             "a.json": "application/json", "m/onnx/model.onnx": "application/octet-stream",
             "m/onnx/model.onnx_data": "application/octet-stream", "m/onnx/model.onnx_data_1": "application/octet-stream",
             "index.html": "text/html"}
    for name in files:
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        if name != "index.html":
            (site / name).write_bytes(b"\0bytes")
    server, url = deploy.serve(site)
    try:
        for name, mime in files.items():
            status, headers, body = _get(url + name)
            assert status == 200 and headers["Content-Type"].split(";")[0] == mime, name
            assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get(url + "models/none/config.json")
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_serve_refuses_a_folder_without_the_page(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.html"):
        deploy.serve(tmp_path)


def test_deploy_copies_a_good_model_and_writes_the_presets(exported_gpt2, site):
    target = deploy.deploy_model(exported_gpt2, site, "tiny")
    assert target == site / "models" / "tiny"
    assert (target / "onnx" / "model_quantized.onnx").read_bytes() == (exported_gpt2 / "onnx" / "model_quantized.onnx").read_bytes()
    presets = json.loads((site / "models" / "presets.json").read_text())
    assert {"factual", "creative"} <= set(presets)
    assert presets["factual"]["do_sample"] is False and presets["creative"]["do_sample"] is True
    # deploying again replaces the copy, leaving no staging folder
    deploy.deploy_model(exported_gpt2, site, "tiny")
    assert sorted(p.name for p in (site / "models").iterdir()) == ["presets.json", "tiny"]


def test_deploy_refuses_a_broken_model_and_says_why(exported_gpt2, site, tmp_path):
    broken = Path(shutil.copytree(exported_gpt2, tmp_path / "broken"))
    (broken / "tokenizer.json").unlink()
    with pytest.raises(export.ModelFolderError, match="tokenizer.json: missing"):
        deploy.deploy_model(broken, site, "broken")
    assert not (site / "models" / "broken").exists()
    with pytest.raises(ValueError, match="plain folder name"):
        deploy.deploy_model(exported_gpt2, site, "../escape")


# Names Transformers.js's isValidHfModelId refuses (it would then fetch the model from another address
# than models/<name>/), and names it takes; tests/test_site_browser.py checks both lists against the library.
REFUSED_NAMES = ["my model", "smollm2--ft", "model-", "-model", "m" * 97, "v1..2", "model.git", "model.ipynb", "modèle", "model\n"]
TAKEN_NAMES = ["course-model", "m" * 96, "smollm2_ft.v2", "_model_", "a", "test-tiny-gpt2"]


def test_deploy_refuses_a_name_transformers_js_would_not_take_for_a_model_id(exported_gpt2, site):
    for name in REFUSED_NAMES:
        assert not deploy.is_valid_model_name(name), name
        with pytest.raises(ValueError) as refused:
            deploy.deploy_model(exported_gpt2, site, name)
        message = str(refused.value)
        assert repr(name) in message and deploy.MODEL_NAME_RULE in message and "Transformers.js" in message
        assert "Choose a name such as 'course-model'" in message
    assert not (site / "models").exists()  # refused before anything was copied
    assert all(deploy.is_valid_model_name(name) for name in TAKEN_NAMES)
    assert deploy.deploy_model(exported_gpt2, site, "m" * 96).name == "m" * 96


def test_deploy_keeps_the_stop_strings_and_the_fine_tuning_length(exported_gpt2, site, tmp_path):
    from helpers import prompt

    def deployed_template(source, **kwargs):
        target = deploy.deploy_model(source, site, "tiny", **kwargs)
        return json.loads((target / "prompt_template.json").read_text())

    plain = deployed_template(exported_gpt2)
    assert plain["stop_strings"] == list(prompt.STOP_STRINGS) and "trained_max_length" not in plain
    assert deployed_template(exported_gpt2, max_length=384)["trained_max_length"] == 384
    # a course model: chapter 05 records the length it fine-tuned on in the template, which export copies
    exported = Path(shutil.copytree(exported_gpt2, tmp_path / "exported"))
    prompt.write_template(exported / "prompt_template.json", trained_max_length=256)
    assert deployed_template(exported)["trained_max_length"] == 256
    assert deployed_template(exported, max_length=128)["trained_max_length"] == 128  # the argument wins
    assert json.loads((exported / "prompt_template.json").read_text())["trained_max_length"] == 256
    with pytest.raises(ValueError, match="max_length must be a positive number"):
        deploy.deploy_model(exported_gpt2, site, "tiny", max_length=0)


def test_vendor_check_and_missing_npm(site, monkeypatch):
    (site / "package.json").write_text(json.dumps({"dependencies": {"@huggingface/transformers": "4.3.2"}}))
    assert not deploy.vendor_is_current(site)
    monkeypatch.setattr(deploy.shutil, "which", lambda name: None)
    with pytest.raises(deploy.SiteBuildError, match="npm is not installed"):
        deploy.build_site(site)


def test_site_pins_the_library_with_a_lockfile():
    package = json.loads((deploy.SITE_DIR / "package.json").read_text())
    version = package["dependencies"]["@huggingface/transformers"]
    assert version[0].isdigit(), "an exact version, no range"
    lock = json.loads((deploy.SITE_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@huggingface/transformers"]["version"] == version


def test_lockfile_ships_the_onnxruntime_web_that_transformers_js_bundles():
    # site/worker.js runs ONNX Runtime Web's plain CPU build (its .mjs/.wasm from node_modules/onnxruntime-web)
    # under the JavaScript bundled in transformers.min.js: both must be the very same version.
    lock = json.loads((deploy.SITE_DIR / "package-lock.json").read_text())["packages"]
    wanted = lock["node_modules/@huggingface/transformers"]["dependencies"]["onnxruntime-web"]
    assert lock["node_modules/onnxruntime-web"]["version"] == wanted
    assert {"ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"} <= set(deploy.VENDOR_FILES)


def test_cli_deploys(exported_gpt2, site, capsys):
    assert deploy.main(["deploy", str(exported_gpt2), "--name", "cli", "--site", str(site)]) == 0
    assert "?model=cli" in capsys.readouterr().out
    assert deploy.main(["deploy", str(site / "nothing"), "--site", str(site)]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_the_default_model_name_has_one_owner(exported_gpt2, site, capsys):
    from helpers.profiles import PROFILES, get_profile

    # site/page.json owns it (the page opens it without ?model=); deploy and every profile use it
    assert deploy.DEFAULT_NAME == json.loads((deploy.SITE_DIR / "page.json").read_text())["default_model"]
    assert {get_profile(name)["deploy_name"] for name in PROFILES} == {deploy.DEFAULT_NAME}
    assert deploy.main(["deploy", str(exported_gpt2), "--site", str(site)]) == 0
    assert (site / "models" / deploy.DEFAULT_NAME / "config.json").exists()
    assert f"?model={deploy.DEFAULT_NAME}" in capsys.readouterr().out


def test_server_stays_quiet_when_a_client_hangs_up(site, capfd):
    import socket
    import struct
    import time

    (site / "big.onnx").write_bytes(b"\0" * 8_000_000)  # more than the socket buffers hold
    server, url = deploy.serve(site)
    try:
        for _ in range(3):
            client = socket.create_connection(server.server_address[:2])
            client.sendall(b"GET /big.onnx HTTP/1.1\r\nHost: x\r\n\r\n")
            client.recv(1024)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, as a browser cancelling
            client.close()
        time.sleep(0.5)
        assert _get(url + "index.html")[0] == 200  # still serving
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capfd.readouterr().err
    try:  # any other error is still reported
        raise ValueError("a real server bug")
    except ValueError:
        server.handle_error(None, ("127.0.0.1", 0))
    assert "a real server bug" in capfd.readouterr().err


def test_the_browser_is_found_where_it_is_or_its_absence_says_how_to_get_one(tmp_path, monkeypatch):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("COURSE_CHROMIUM", str(fake))
    assert deploy.find_browser() == fake and deploy.ensure_browser(install=False) == fake
    monkeypatch.setenv("COURSE_CHROMIUM", str(tmp_path / "nowhere"))
    monkeypatch.setattr(deploy, "BROWSER_PATHS", (tmp_path / "no-chromium",))
    found = deploy.find_browser()  # Playwright's own Chromium, when it has downloaded one here
    if found is None:
        with pytest.raises(deploy.BrowserMissingError, match="apt-get install -y chromium.*playwright install"):
            deploy.ensure_browser(install=False)
    else:
        assert "ms-playwright" in str(found)


def test_publish_space_creates_a_static_space_and_uploads_the_staged_folder(tmp_path):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs))

    url = deploy.publish_space(tmp_path, "Some_One/corpus-to-client", api=FakeApi())
    assert url == "https://some-one-corpus-to-client.static.hf.space/"
    assert calls[0] == ("create_repo", "Some_One/corpus-to-client", {"repo_type": "space", "space_sdk": "static", "exist_ok": True})
    assert calls[1][2]["folder_path"] == str(tmp_path) and calls[1][2]["repo_type"] == "space"


def test_staging_a_space_without_a_deployed_model_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="deploy the model first"):
        deploy.stage_space(deploy.SITE_DIR, tmp_path / "space", "never-deployed")
