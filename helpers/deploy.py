"""Chapter 07: the exported model on a static web page that runs it in the browser.

``site/`` is a plain static page (``index.html``, ``app.js`` on the main thread, ``worker.js`` with
the Transformers.js pipeline in a Web Worker). Three steps make it work from local files:

- ``build_site``: ``npm ci`` for the pinned ``@huggingface/transformers`` and a copy of its browser
  build and ONNX Runtime's WASM files into ``site/vendor/`` (no CDN at run time);
- ``deploy_model``: the exported model folder into ``site/models/<name>/`` after
  ``helpers.export.check_model_folder`` found nothing wrong, with the generation presets beside it;
- ``serve``: a threaded static server with the right MIME types and the cross-origin isolation
  headers that let ONNX Runtime use several threads.

The rules the page shares with Python (the file per dtype, the default model name) are in
``site/page.json``, read by ``helpers.export`` and by ``site/app.js``.

``python -m helpers.deploy serve`` is the one command that serves ``site/``.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from helpers.export import require_good_folder
from helpers.profiles import DEFAULT_DEPLOY_NAME, REPO_ROOT

SITE_DIR = REPO_ROOT / "site"
# ONNX Runtime Web's asyncify build (WebGPU and CPU) and its plain CPU build, faster on WASM (site/worker.js).
VENDOR_FILES = ("transformers.min.js", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm",
                "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# The folder under site/models/ the page opens without ?model= (site/page.json, which the page reads too).
DEFAULT_NAME: str = DEFAULT_DEPLOY_NAME

def presets() -> dict[str, dict[str, Any]]:
    """The generation presets the page offers: chapter 05's ``helpers.finetune.PRESETS``, each with a label."""
    from helpers.finetune import PRESETS

    return {name: {"label": name.capitalize(), **dict(values)} for name, values in PRESETS.items()}


class SiteBuildError(RuntimeError):
    """The site's JavaScript could not be installed or vendored."""


def vendor_is_current(site_dir: Path | str = SITE_DIR) -> bool:
    """True when ``vendor/`` holds every file, copied from the version ``package.json`` pins."""
    site_dir = Path(site_dir)
    stamp = site_dir / "vendor" / "VERSION.json"
    if not stamp.exists() or not all((site_dir / "vendor" / name).exists() for name in VENDOR_FILES):
        return False
    pinned = json.loads((site_dir / "package.json").read_text(encoding="utf-8"))["dependencies"]["@huggingface/transformers"]
    return json.loads(stamp.read_text(encoding="utf-8")).get("@huggingface/transformers") == pinned


def build_site(site_dir: Path | str = SITE_DIR, *, force: bool = False) -> Path:
    """Install the pinned JavaScript (``npm ci``) and copy it into ``site/vendor/``, unless already current.

    Install scripts are skipped (``--ignore-scripts`` and ``ONNXRUNTIME_NODE_INSTALL*=skip``):
    onnxruntime-node's would download native binaries the page never uses. Returns the vendor folder.
    """
    site_dir = Path(site_dir)
    if not force and vendor_is_current(site_dir):
        return site_dir / "vendor"
    npm = shutil.which("npm")
    if npm is None:
        raise SiteBuildError("npm is not installed: install Node.js 20 (e.g. `apt-get install -y nodejs npm`), "
                             "then run `python -m helpers.deploy build`")
    env = os.environ | {"ONNXRUNTIME_NODE_INSTALL": "skip", "ONNXRUNTIME_NODE_INSTALL_CUDA": "skip"}
    installed = site_dir / "node_modules" / "@huggingface" / "transformers" / "package.json"
    steps = [[npm, "run", "vendor"]]
    if force or not installed.exists() or not _installed_matches_pin(site_dir):
        steps.insert(0, [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"])
    for step in steps:
        done = subprocess.run(step, cwd=site_dir, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SiteBuildError(f"`{' '.join(step[1:])}` failed in {site_dir} (exit {done.returncode}):\n"
                                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}\nIs the npm registry reachable?")
    if not vendor_is_current(site_dir):
        raise SiteBuildError(f"{site_dir / 'vendor'} is still incomplete after `npm run vendor`")
    return site_dir / "vendor"


def _installed_matches_pin(site_dir: Path) -> bool:
    installed = json.loads((site_dir / "node_modules" / "@huggingface" / "transformers" / "package.json").read_text(encoding="utf-8"))
    pinned = json.loads((site_dir / "package.json").read_text(encoding="utf-8"))["dependencies"]["@huggingface/transformers"]
    return installed.get("version") == pinned


# The names Transformers.js 4 takes for a model id (src/utils/hub/utils.js, isValidHfModelId, with
# REPO_ID_REGEX from hub/constants.js): 1 to 96 letters, digits, "_", "-" or ".", beginning and ending
# with a letter, digit or "_", no ".." or "--", not ending in ".git" or ".ipynb". Any other name it
# takes for a path of its own, not one under env.localModelPath: the page would fetch the model from
# another address than models/<name>/.
_MODEL_ID = re.compile(r"(\b[\w\-.]+\b/)?\b[\w\-.]{1,96}\b", re.ASCII)
MODEL_NAME_RULE = ("1 to 96 letters, digits, '_', '-' or '.', beginning and ending with a letter, digit or '_', "
                   "without '..' or '--', not ending in '.git' or '.ipynb'")


def is_valid_model_name(name: str) -> bool:
    """Whether Transformers.js (the version site/package.json pins) takes ``name`` as a model id: its ``isValidHfModelId``."""
    return (_MODEL_ID.fullmatch(name) is not None and ".." not in name and "--" not in name
            and not name.endswith((".git", ".ipynb")))


def _page_template(path: Path, max_length: int | None) -> None:
    """Set ``trained_max_length`` in the deployed ``prompt_template.json`` (the token budget of a
    conversation, site/worker.js) to ``max_length``, in place of the one chapter 05 recorded there.
    Everything else, the stop strings included, is ``helpers.prompt.template_json``'s, as exported."""
    template = json.loads(path.read_text(encoding="utf-8"))
    if max_length is not None and template.get("trained_max_length") != max_length:
        path.write_text(json.dumps(template | {"trained_max_length": max_length}, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")


def deploy_model(model_dir: Path | str, site_dir: Path | str = SITE_DIR, name: str = DEFAULT_NAME,
                 *, dtypes: tuple[str, ...] = ("fp32", "q8"), max_length: int | None = None) -> Path:
    """Copy the exported model in ``model_dir`` to ``site/models/<name>/`` and return that folder.

    Refuses (``helpers.export.ModelFolderError``, explaining each problem) a folder the browser
    could not load, and (``ValueError``) a ``name`` Transformers.js would not take for a model id
    (``is_valid_model_name``). Replaces an earlier copy of the same name, and writes ``models/presets.json``.
    ``max_length``: the longest example the model was fine-tuned on, which the page keeps a
    conversation within (``prompt_template.json``'s ``trained_max_length``); by default what chapter 05
    recorded there (``helpers.prompt.template_json``), else none (only the context limits it).
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"model name {name!r} must be a plain folder name (it becomes the page's ?model=)")
    if not is_valid_model_name(name):
        raise ValueError(f"model name {name!r} is not one Transformers.js takes for a model id ({MODEL_NAME_RULE}): "
                         "it would look for the model at another address than models/<name>/. "
                         "Choose a name such as 'course-model' or 'smollm2-ft' (--name)")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be a positive number of tokens, not {max_length!r}")
    require_good_folder(model_dir, dtypes)
    models = Path(site_dir) / "models"
    target = models / name
    staging = models / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    # New files, not copies of the old ones' times: a redeployed model (even an older export) gets a new
    # Last-Modified, so a browser revalidating its cached copy fetches it instead of hearing 304.
    shutil.copytree(model_dir, staging, copy_function=shutil.copyfile)
    _page_template(staging / "prompt_template.json", max_length)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    (models / "presets.json").write_text(json.dumps(presets(), indent=2) + "\n", encoding="utf-8")
    return target


@functools.lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:32]


def content_etag(path: Path | str) -> str:
    """A strong ETag from the file's bytes (hashed once per version of the file, then remembered)."""
    stat = os.stat(path)
    return f'"{_digest(str(path), stat.st_mtime_ns, stat.st_size)}"'


class SiteRequestHandler(SimpleHTTPRequestHandler):
    """Static files with the MIME types and headers the page needs.

    Cross-origin isolation (COOP + COEP) makes ``SharedArrayBuffer`` available, which ONNX Runtime
    Web needs for multithreaded WASM; without it the page still works on one thread.
    """

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".json": "application/json",
        ".onnx": "application/octet-stream",
        ".onnx_data": "application/octet-stream",
        ".css": "text/css",
        ".html": "text/html",
    }

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        # .onnx_data_1, _2...: external-data chunks have no extension mimetypes knows
        if "onnx_data" in os.path.basename(str(path)):
            return "application/octet-stream"
        return super().guess_type(path)

    etag: str | None = None

    def send_head(self) -> Any:
        # A validator from the content (Last-Modified has whole seconds, and a model redeployed within
        # one would look unchanged): If-None-Match answers 304 only for the very same bytes.
        path = self.translate_path(self.path)
        self.etag = content_etag(path) if os.path.isfile(path) else None
        asked = [tag.strip() for tag in self.headers.get("If-None-Match", "").split(",")]
        if self.etag and (self.etag in asked or "*" in asked):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.end_headers()
            return None
        return super().send_head()  # it ignores If-Modified-Since when If-None-Match is sent

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        # A redeployed model must not be served from a stale browser cache: always revalidate.
        self.send_header("Cache-Control", "no-cache")
        if self.etag:
            self.send_header("ETag", self.etag)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)


class SiteServer(ThreadingHTTPServer):
    """A threaded server that stays quiet when a client hangs up midway.

    A browser cancels requests it no longer needs (a headless one closing a page, a check reading only
    the headers of a large file); the base class prints a traceback for each. Those are the client's
    choice, not a server error; anything else is still printed.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipeError, ConnectionResetError...
            return
        super().handle_error(request, client_address)


def serve(site_dir: Path | str = SITE_DIR, port: int = 0, host: str = "127.0.0.1",
          *, verbose: bool = False) -> tuple[SiteServer, str]:
    """Serve ``site_dir`` in a background thread; return the server and its URL.

    ``port=0`` picks a free port. Stop it with ``server.shutdown(); server.server_close()``.
    """
    site_dir = Path(site_dir)
    if not (site_dir / "index.html").exists():
        raise FileNotFoundError(f"{site_dir} has no index.html: pass the course's site/ folder")
    handler = functools.partial(SiteRequestHandler, directory=str(site_dir))
    server = SiteServer((host, port), handler)
    server.verbose = verbose  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="site-server", daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/"


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Where a Chromium may be, in order: the course's setting, Debian's package (setup.sh installs it),
# Ubuntu's, then the one Playwright downloads for itself (`python -m playwright install chromium`).
BROWSER_PATHS = (Path("/usr/bin/chromium"), Path("/usr/bin/chromium-browser"))


class BrowserMissingError(FileNotFoundError):
    """No Chromium to drive the page with."""


def find_browser() -> Path | None:
    """A Chromium executable: ``$COURSE_CHROMIUM``, Debian's or Ubuntu's, else Playwright's own; None when none is installed."""
    candidates = [Path(os.environ["COURSE_CHROMIUM"])] if os.environ.get("COURSE_CHROMIUM") else []
    candidates += list(BROWSER_PATHS)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            candidates.append(Path(playwright.chromium.executable_path))
    except Exception:  # no playwright package, or it cannot start here: only the system paths count
        pass
    return next((path for path in candidates if path.is_file()), None)


def ensure_browser(install: bool | None = None) -> Path:
    """A Chromium to drive the page with, installing Playwright's own when there is none and ``install``.

    ``install`` defaults to True on Colab, which has no Chromium (the install prints its progress and
    takes a minute or two); elsewhere a missing browser raises ``BrowserMissingError`` saying how to get one.
    """
    found = find_browser()
    if found is not None:
        return found
    if install is None:
        install = "google.colab" in sys.modules
    how = ("sudo apt-get install -y chromium (Debian; scripts/setup.sh does it as root), or "
           f"{sys.executable} -m playwright install --with-deps chromium")
    if not install:
        raise BrowserMissingError(f"no Chromium found (looked at {', '.join(map(str, BROWSER_PATHS))} and Playwright's): {how}")
    print("no Chromium here: installing Playwright's (python -m playwright install --with-deps chromium)", flush=True)
    done = subprocess.run([sys.executable, "-m", "playwright", "install", "--with-deps", "chromium"])
    found = find_browser()
    if done.returncode != 0 or found is None:
        raise BrowserMissingError(f"installing Playwright's Chromium failed (exit {done.returncode}, output above): {how}")
    return found


# The widths chapter 07 photographs the page at: a laptop's window and a phone's.
SCREENSHOT_WIDTHS = (1280, 390)


def drive_page(url: str, *, model: str, dtype: str = "q8", instruction: str = "Explain Albedo.",
               max_new_tokens: int = 32, screenshots: Path | str | None = None,
               executable: Path | str | None = None) -> dict[str, Any]:
    """Open the served page headless (Playwright + Chromium: ``ensure_browser``'s), ask greedily, return what it did.

    Returns the page's result (``text``, ``tokenIds``, ``tps``...), the backend it chose (with the
    ONNX Runtime Web build and thread count on WASM) and the progress events. With ``screenshots`` (a
    folder), saves the page with its answer as a desktop and a phone see it: ``page-1280.png`` and
    ``page-390.png`` (``SCREENSHOT_WIDTHS``; their paths under ``"screenshots"``). Raises
    ``RuntimeError`` with the page's own message when the model does not load.
    """
    executable = Path(executable) if executable is not None else ensure_browser()
    if not executable.exists():
        raise BrowserMissingError(f"{executable} is missing: install Chromium (`sudo apt-get install -y chromium`)")
    # Playwright's sync API refuses to run inside a running asyncio loop, which Jupyter has: a thread has none.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_drive_page, url, model, dtype, instruction, max_new_tokens, screenshots, executable).result()


def _drive_page(url: str, model: str, dtype: str, instruction: str, max_new_tokens: int,
                screenshots: Path | str | None, executable: Path | str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": SCREENSHOT_WIDTHS[-1], "height": 844})  # a phone-sized screen
            page.goto(f"{url}index.html?model={model}&dtype={dtype}")
            page.wait_for_function("window.courseApp && (courseApp.ready || courseApp.error)", timeout=120_000)
            if page.evaluate("courseApp.error"):
                raise RuntimeError(f"the page could not load {model!r}: {page.evaluate('courseApp.error')}")
            page.uncheck("#do_sample")
            page.fill("#repetition_penalty", "1")
            page.fill("#no_repeat_ngram_size", "0")  # plain greedy: what the Python reference decodes
            page.fill("#max_new_tokens", str(max_new_tokens))
            page.fill("#instruction", instruction)
            page.click("#generate")
            page.wait_for_function("courseApp.result || courseApp.error", timeout=300_000)
            shots = []
            for width in SCREENSHOT_WIDTHS if screenshots is not None else ():
                page.set_viewport_size({"width": width, "height": 800 if width > 600 else 844})
                shots.append(Path(screenshots) / f"page-{width}.png")
                page.screenshot(path=str(shots[-1]), full_page=True)
            return {
                "screenshots": [str(shot) for shot in shots],
                "result": page.evaluate("courseApp.result"),
                "error": page.evaluate("courseApp.error"),
                "backend": page.text_content("#backend"),
                "ort_build": page.evaluate("courseApp.ortBuild"),
                "num_threads": page.evaluate("courseApp.numThreads"),
                "cross_origin_isolated": page.evaluate("self.crossOriginIsolated"),
                "progress_files": page.evaluate("[...new Set(courseApp.events.filter(e => e.file).map(e => e.file))]"),
            }
        finally:
            browser.close()


# A static Hugging Face Space serves the page with these (its README's `custom_headers`): without them
# the page runs on one thread, and Stop has to end the worker and load the model again.
SPACE_HEADERS = {"cross-origin-embedder-policy": "require-corp", "cross-origin-opener-policy": "same-origin",
                 "cross-origin-resource-policy": "cross-origin"}
SITE_FILES = ("index.html", "app.js", "worker.js", "style.css", "page.json")


def stage_space(site_dir: Path | str, dest: Path | str, name: str = DEFAULT_NAME, *, title: str = "Corpus to Client") -> Path:
    """A folder to publish as a static Hugging Face Space: the page, ``vendor/``, the deployed model
    ``name`` (as ``models/<the page's default>/``, so the Space's address opens it) and a README whose
    ``custom_headers`` give the cross-origin isolation headers. Returns ``dest``."""
    site_dir, dest = Path(site_dir), Path(dest)
    model = site_dir / "models" / name
    missing = [str(site_dir / f) for f in SITE_FILES if not (site_dir / f).exists()]
    if not vendor_is_current(site_dir):
        missing.append(f"{site_dir / 'vendor'} (python -m helpers.deploy build)")
    if not (model / "config.json").exists():
        missing.append(f"{model} (deploy the model first: chapter 07, or python -m helpers.deploy deploy)")
    if missing:
        raise FileNotFoundError("cannot stage the Space, missing: " + "; ".join(missing))
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for file in SITE_FILES:
        shutil.copy2(site_dir / file, dest / file)
    shutil.copytree(site_dir / "vendor", dest / "vendor")
    shutil.copytree(model, dest / "models" / DEFAULT_NAME)
    if (site_dir / "models" / "presets.json").exists():
        shutil.copy2(site_dir / "models" / "presets.json", dest / "models" / "presets.json")
    headers = "\n".join(f"  {key}: {value}" for key, value in SPACE_HEADERS.items())
    (dest / "README.md").write_text(
        f"---\ntitle: {title}\nsdk: static\napp_file: index.html\npinned: false\ncustom_headers:\n{headers}\n---\n\n"
        f"A small language model fine-tuned by the Corpus to Client course, running in your browser with "
        f"Transformers.js (the model: models/{DEFAULT_NAME}/, with its model card).\n", encoding="utf-8")
    return dest


def publish_space(staged: Path | str, repo_id: str, *, token: str | None = None, api: Any = None) -> str:
    """Create (or update) the static Space ``repo_id`` ("you/corpus-to-client") from a ``stage_space``
    folder; return the page's address. Needs a Hugging Face token with write access (``token``, or
    ``huggingface-cli login`` / ``HF_TOKEN``)."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="space", space_sdk="static", exist_ok=True)
    api.upload_folder(folder_path=str(staged), repo_id=repo_id, repo_type="space",
                      commit_message="Corpus to Client: the page and its model")
    owner, space = repo_id.split("/", 1)
    return f"https://{owner}-{space}.static.hf.space/".lower().replace("_", "-")


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.deploy", description="Build, deploy to and serve the course's site/.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve site/ (COOP/COEP headers, correct MIME types)")
    serve_cmd.add_argument("--port", type=_port, default=8000, help="0-65535 (0: any free port)")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--site", type=Path, default=SITE_DIR)
    build_cmd = commands.add_parser("build", help="npm ci + copy the library into site/vendor/")
    build_cmd.add_argument("--site", type=Path, default=SITE_DIR)
    build_cmd.add_argument("--force", action="store_true")
    deploy_cmd = commands.add_parser("deploy", help="copy an exported model into site/models/<name>/")
    deploy_cmd.add_argument("model_dir", type=Path)
    deploy_cmd.add_argument("--name", default=DEFAULT_NAME)
    deploy_cmd.add_argument("--site", type=Path, default=SITE_DIR)
    deploy_cmd.add_argument("--max-length", type=int, default=None,
                            help="tokens the model was fine-tuned on (default: what chapter 05 recorded in prompt_template.json)")
    space_cmd = commands.add_parser("space", help="publish the page and a deployed model as a static Hugging Face Space")
    space_cmd.add_argument("--repo", required=True, help="the Space, e.g. your-name/corpus-to-client")
    space_cmd.add_argument("--name", default=DEFAULT_NAME, help="the deployed model (site/models/<name>/)")
    space_cmd.add_argument("--site", type=Path, default=SITE_DIR)
    space_cmd.add_argument("--staging", type=Path, default=REPO_ROOT / "runs" / "space", help="where the Space's files are gathered")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(f"vendor: {build_site(args.site, force=args.force)}")
        elif args.command == "deploy":
            print(f"deployed: {deploy_model(args.model_dir, args.site, args.name, max_length=args.max_length)}; open ?model={args.name}")
        elif args.command == "space":
            staged = stage_space(args.site, args.staging, args.name)
            print(f"published: {publish_space(staged, args.repo)} (the Space builds for a minute first)")
        else:
            if not vendor_is_current(args.site):
                print("note: site/vendor/ is missing or outdated; run `python -m helpers.deploy build` first", file=sys.stderr)
            server, url = serve(args.site, args.port, args.host, verbose=True)
            print(f"serving {args.site} at {url} (Ctrl+C stops)", flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                server.shutdown()
                server.server_close()
    except (ValueError, RuntimeError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
