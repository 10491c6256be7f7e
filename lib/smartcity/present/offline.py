"""Leaflet, its plugins and their CSS from pinned npm packages, so saved maps render offline.

Folium writes maps that load Leaflet, jQuery, Bootstrap, Font Awesome and the awesome-markers
plugin from CDNs: opened without internet (a report shared as files, an archive, a laptop on a
train) such a map is a blank page. `make setup` fetches the npm packages of exactly the versions
folium links (``npm pack``, checked against the registry's sha512 integrity pinned below) into
``.cache/web/``; :func:`inline_assets` then swaps every CDN ``<script>``/``<link>`` of a page for
the file's content, with the images and fonts the CSS refers to as ``data:`` URIs. A link that
has no pinned package is an error, never silently left pointing at the internet.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from smartcity.platform.params import project_root
from smartcity.platform.processes import folder_lock

INSTALL_NPM = (
    "install npm (Debian/Ubuntu: apt-get install npm; macOS: brew install node; conda: conda install -c conda-forge "
    "nodejs), then run make setup"
)


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity (sha512 of the tarball)

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball(self) -> str:
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


#: The packages, at the versions folium 0.20 links (bootstrap 3.0.0, whose glyphicons folium uses,
#: is not on npm: 3.4.1 has the same icon font and class names).
PACKAGES: dict[str, NpmPackage] = {
    "leaflet": NpmPackage(
        "leaflet",
        "1.9.3",
        "sha512-iB2cR9vAkDOu5l3HAay2obcUHZ7xwUBBjph8+PGtmW/2lYhbLizWtG7nTeYht36WfOslixQF9D/uSIzhZgGMfQ==",
    ),
    "jquery": NpmPackage(
        "jquery",
        "3.7.1",
        "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
    ),
    "bootstrap": NpmPackage(
        "bootstrap",
        "5.2.2",
        "sha512-dEtzMTV71n6Fhmbg4fYJzQsw1N29hJKO1js5ackCgIpDcGid2ETMGC6zwSYw09v05Y+oRdQ9loC54zB1La3hHQ==",
    ),
    "bootstrap3": NpmPackage(
        "bootstrap",
        "3.4.1",
        "sha512-yN5oZVmRCwe5aKwzRj6736nSmKDX7pLYwsXiCj/EYmo16hODaBiT4En5btW/jhBF/seV+XMx3aYwukYC3A49DA==",
    ),
    "awesome-markers": NpmPackage(
        "drmonty-leaflet-awesome-markers",
        "2.0.2",
        "sha512-g508pdnnHQr9l4kU6McvJzcSd0w1FvHFlZZCYc4oT+zjwYJi1qtj0fFBFEWMKoNfHK4UcBya1eccyjKfu4chjQ==",
    ),
    "fontawesome": NpmPackage(
        "@fortawesome/fontawesome-free",
        "6.2.0",
        "sha512-CNR7qRIfCwWHNN7FnKUniva94edPdyQzil/zCwk3v6k4R6rR2Fr8i4s3PM7n/lyfPA6Zfko9z5WDzFxG9SW1uQ==",
    ),
}


@dataclass(frozen=True)
class Asset:
    package: str  # key of PACKAGES, or "" for an asset made here
    path: str  # file inside the package tarball (without the leading "package/")
    kind: str  # js | css | glyphicons-css | rotate-css


#: Every URL folium (0.20) and the lab's maps load, and where its offline copy comes from.
ASSETS: dict[str, Asset] = {
    "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js": Asset("leaflet", "dist/leaflet.js", "js"),
    "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css": Asset("leaflet", "dist/leaflet.css", "css"),
    "https://code.jquery.com/jquery-3.7.1.min.js": Asset("jquery", "dist/jquery.min.js", "js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/js/bootstrap.bundle.min.js": Asset(
        "bootstrap", "dist/js/bootstrap.bundle.min.js", "js"
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/css/bootstrap.min.css": Asset(
        "bootstrap", "dist/css/bootstrap.min.css", "css"
    ),
    "https://netdna.bootstrapcdn.com/bootstrap/3.0.0/css/bootstrap-glyphicons.css": Asset(
        "bootstrap3", "dist/css/bootstrap.min.css", "glyphicons-css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/leaflet.awesome-markers.js": Asset(
        "awesome-markers", "js/leaflet.awesome-markers.min.js", "js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/leaflet.awesome-markers.css": Asset(
        "awesome-markers", "css/leaflet.awesome-markers.css", "css"
    ),
    "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@6.2.0/css/all.min.css": Asset(
        "fontawesome", "css/all.min.css", "css"
    ),
    "https://cdn.jsdelivr.net/gh/python-visualization/folium/folium/templates/leaflet.awesome.rotate.min.css": Asset(
        "", "", "rotate-css"
    ),
}

_MIME = {
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
}
_SCRIPT = re.compile(r'<script\s+src="(?P<url>https?://[^"]+)"\s*>\s*</script>')
_LINK = re.compile(r'<link\s+rel="stylesheet"\s+href="(?P<url>https?://[^"]+)"\s*/?>')
_EXTERNAL = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(https?:)?//', re.IGNORECASE)
_URL = re.compile(r"url\(\s*(['\"]?)(?P<ref>[^)'\"]+)\1\s*\)")
_FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}")


class AssetError(RuntimeError):
    """A pinned package is missing or corrupt, or a page links something with no offline copy."""


def cache_dir() -> Path:
    return project_root() / ".cache" / "web"


def integrity_of(path: Path) -> str:
    """The npm registry's integrity string (sha512, base64) of a file."""
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _verified(package: NpmPackage) -> Path | None:
    path = cache_dir() / package.tarball
    return path if path.is_file() and integrity_of(path) == package.integrity else None


def fetch_package(package: NpmPackage) -> Path:
    """The package's tarball in the cache: `npm pack`ed once, checked against its pinned integrity."""
    with folder_lock(cache_dir()):
        if found := _verified(package):
            return found
        npm = shutil.which("npm")
        if not npm:
            raise AssetError(f"npm is needed once to fetch {package.spec} for offline maps: {INSTALL_NPM}")
        staging = Path(tempfile.mkdtemp(prefix=".npm-", dir=cache_dir()))
        try:
            result = subprocess.run(
                [npm, "pack", package.spec, "--json", "--pack-destination", str(staging)],
                capture_output=True,
                text=True,
                check=False,
                cwd=staging,
            )
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
                raise AssetError(f"npm pack {package.spec} failed (is the npm registry reachable?):\n{tail}")
            packed = staging / json.loads(result.stdout)[0]["filename"].split("/")[-1]
            if integrity_of(packed) != package.integrity:
                raise AssetError(f"{package.spec}: the tarball's sha512 is not the pinned one; refusing it")
            packed.replace(cache_dir() / package.tarball)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cache_dir() / package.tarball


def setup_all() -> dict[str, str]:
    """Fetch every pinned package (what `make setup` runs); returns spec -> tarball name."""
    return {p.spec: fetch_package(p).name for p in PACKAGES.values()}


@cache
def package_file(key: str, path: str) -> bytes:
    """One file of a pinned package, read from its cached tarball."""
    package = PACKAGES[key]
    tarball = _verified(package)
    if tarball is None:
        raise AssetError(
            f"{package.spec} is not in {cache_dir()} (or is corrupt): run make setup "
            f"(`python -m smartcity setup`) once with access to the npm registry"
        )
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            member = tar.extractfile(f"package/{path}")
        except KeyError:
            member = None
        if member is None:
            raise AssetError(f"{package.spec} has no file {path}")
        return member.read()


def _data_uri(key: str, path: str) -> str:
    mime = _MIME.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(package_file(key, path)).decode()}"


def _woff2_only(css: str, keep_fonts: bool) -> str:
    """Each @font-face keeps one source, its woff2 (every browser that runs Leaflet 1.9 reads it),
    or none when the page uses no glyph of that font: the other formats would only add weight."""

    def rewrite(match: re.Match[str]) -> str:
        block = match.group(0)
        woff2 = [m.group("ref") for m in _URL.finditer(block) if m.group("ref").split("?")[0].endswith(".woff2")]
        body = re.sub(r"src\s*:[^;}]*;?", "", block[block.index("{") + 1 : -1]).strip().rstrip(";")
        source = f';src:url({woff2[0]}) format("woff2")' if woff2 and keep_fonts else ""
        return "@font-face{" + body + source + "}"

    return _FONT_FACE.sub(rewrite, css)


def _inline_urls(css: str, key: str, css_path: str) -> str:
    """Relative url(...) references of a package's CSS as data: URIs (images, fonts)."""
    base = PurePosixPath(css_path).parent

    def swap(match: re.Match[str]) -> str:
        ref = match.group("ref").strip()
        if ref.startswith(("data:", "#", "http:", "https:")):
            return match.group(0)
        target = PurePosixPath(*(base / ref.split("?")[0].split("#")[0]).parts)
        parts: list[str] = []
        for part in target.parts:  # resolve ../ inside the package
            if part == "..":
                parts.pop()
            elif part != ".":
                parts.append(part)
        return f"url({_data_uri(key, '/'.join(parts))})"

    return _URL.sub(swap, css)


def _glyphicons_css(key: str, path: str) -> str:
    """Only the Glyphicons of Bootstrap 3 (its @font-face and .glyphicon rules), as folium links them."""
    css = package_file(key, path).decode()
    faces = [m.group(0) for m in _FONT_FACE.finditer(css) if "Glyphicons" in m.group(0)]
    rules = [
        m.group(0)
        for m in re.finditer(r"([^{}@]+)\{([^{}]*)\}", css)
        if all(s.strip().startswith(".glyphicon") for s in m.group(1).split(","))
    ]
    return _inline_urls(_woff2_only("".join(faces), keep_fonts=True), key, path) + "".join(rules)


def _rotate_css() -> str:
    """The rotation classes folium gives a marker icon for its `angle` (fa-rotate-0 ... fa-rotate-359)."""
    return "".join(f".fa-rotate-{n}{{transform:rotate({n}deg)}}" for n in range(360))


def _asset_text(url: str, keep_fonts: bool) -> str:
    asset = ASSETS[url]
    if asset.kind == "rotate-css":
        return _rotate_css()
    if asset.kind == "glyphicons-css":
        return _glyphicons_css(asset.package, asset.path)
    text = package_file(asset.package, asset.path).decode()
    if asset.kind == "css":
        return _inline_urls(_woff2_only(text, keep_fonts), asset.package, asset.path)
    return text.replace("</script", "<\\/script")


#: Leaflet finds its default marker images from a CSS url; inlined, that url is a data: URI and
#: the lookup fails, so the default icon is told its images directly.
def _default_icon_script() -> str:
    urls = {
        k: _data_uri("leaflet", f"dist/images/{f}")
        for k, f in (
            ("iconUrl", "marker-icon.png"),
            ("iconRetinaUrl", "marker-icon-2x.png"),
            ("shadowUrl", "marker-shadow.png"),
        )
    }
    return f"<script>L.Icon.Default.imagePath='';L.Icon.Default.mergeOptions({json.dumps(urls)});</script>"


def inline_assets(page: str) -> str:
    """A folium page with every CDN script and stylesheet replaced by its pinned content.

    Raises AssetError naming any script, stylesheet, image or frame that would still be loaded
    from the network (tile images are fetched by Leaflet at run time and may fail: the map has
    its own background for that).
    """
    uses_fontawesome = '"prefix": "fa"' in page
    unknown = sorted({m.group("url") for p in (_SCRIPT, _LINK) for m in p.finditer(page)} - set(ASSETS))
    if unknown:
        raise AssetError(
            "no offline copy pinned for " + ", ".join(unknown) + " (add it to smartcity.present.offline.ASSETS)"
        )

    def script(match: re.Match[str]) -> str:
        tag = f"<script>{_asset_text(match.group('url'), uses_fontawesome)}</script>"
        return tag + _default_icon_script() if match.group("url").endswith("leaflet.js") else tag

    page = _SCRIPT.sub(script, page)
    page = _LINK.sub(lambda m: f"<style>{_asset_text(m.group('url'), uses_fontawesome)}</style>", page)
    left = _EXTERNAL.search(page)
    if left:
        raise AssetError(f"the page still loads from the network: {page[left.start() : left.start() + 160]}")
    return page


_SRCDOC = re.compile(r'srcdoc="(?P<doc>[^"]*)"')


def inline_frames(page: str) -> str:
    """Inline the assets of every folium map embedded in a page as an ``<iframe srcdoc>``.

    That is how a notebook shows a map; rendered to HTML for the report, the map then renders
    offline like the saved ones (without the corridor background, which only saved maps get).
    """

    def frame(match: re.Match[str]) -> str:
        doc = html.unescape(match.group("doc"))
        if "leaflet" not in doc:
            return match.group(0)
        return f'srcdoc="{html.escape(inline_assets(doc))}"'

    return _SRCDOC.sub(frame, page)
