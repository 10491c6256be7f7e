"""Offline map assets: pinned npm packages, inlined into pages, nothing left to fetch."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import folium
import pytest

from smartcity.present import maps, offline


@pytest.fixture(scope="module")
def corridor_page() -> str:
    return maps.offline_page(maps.corridor_map())


def test_every_pinned_package_is_cached_with_its_registry_integrity() -> None:
    for package in offline.PACKAGES.values():
        tarball = offline.cache_dir() / package.tarball
        assert tarball.is_file(), f"{package.spec} missing: run make setup"
        assert offline.integrity_of(tarball) == package.integrity


def test_every_cdn_link_folium_writes_has_a_pinned_copy() -> None:
    page = folium.Map().get_root().render()
    links = set(re.findall(r'(?:src|href)="(https?://[^"]+\.(?:js|css))"', page))
    assert links and links <= set(offline.ASSETS), links - set(offline.ASSETS)


def test_an_offline_page_loads_nothing_from_the_network(corridor_page: str) -> None:
    assert not re.search(r'<(script|link|img|iframe)\b[^>]*\b(src|href)="(https?:)?//', corridor_page)
    assert "L.AwesomeMarkers" in corridor_page and "leaflet" in corridor_page.lower()
    # the CSS's images and the glyph font came along as data: URIs
    assert "data:image/png;base64," in corridor_page and "data:font/woff2;base64," in corridor_page
    assert ".glyphicon-cloud:before" in corridor_page and ".fa-rotate-90{" in corridor_page
    # only the tiles come from outside, fetched by Leaflet at run time (and may fail)
    assert "tile.openstreetmap.org" in corridor_page


def test_the_offline_page_has_the_corridor_under_the_tiles(corridor_page: str) -> None:
    assert maps.BACKGROUND_PANE in corridor_page and "corridor-town" in corridor_page
    # tiles are in Leaflet's tilePane (z-index 200): online they cover the background
    assert re.search(r'createPane\(\s*"corridor-background"', corridor_page)
    assert re.search(r"style\.zIndex = 150;", corridor_page)


def test_a_link_without_a_pinned_copy_is_an_error() -> None:
    page = (
        folium.Map().get_root().render().replace("</head>", '<script src="https://cdn.example/x.js"></script></head>')
    )
    with pytest.raises(offline.AssetError, match="cdn.example/x.js"):
        offline.inline_assets(page)


def test_a_tampered_tarball_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = offline.PACKAGES["leaflet"]
    shutil.copy(offline.cache_dir() / package.tarball, tmp_path / package.tarball)
    with open(tmp_path / package.tarball, "ab") as handle:
        handle.write(b"\0")
    monkeypatch.setattr(offline, "cache_dir", lambda: tmp_path)
    offline.package_file.cache_clear()
    try:
        with pytest.raises(offline.AssetError, match="make setup"):
            offline.package_file("leaflet", "dist/leaflet.js")
    finally:
        offline.package_file.cache_clear()


def test_saving_leaves_the_notebooks_map_as_it_was(tmp_path: Path) -> None:
    from tests.conftest import lab_params

    # what notebook 01 shows after saving, as when save_map was folium's Map.save
    control = maps.corridor_map()
    control.save(str(tmp_path / "control.html"))
    fmap = maps.corridor_map()
    saved = maps.save_map(fmap, lab_params(tmp_path).paths.maps, "corridor")
    assert fmap._repr_html_() == control._repr_html_()
    assert saved.read_text().startswith("<!DOCTYPE html>")
    assert saved.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_maps_embedded_in_a_rendered_notebook_are_inlined_too() -> None:
    import html

    page = f"<html><body><p>a notebook</p>{maps.corridor_map()._repr_html_()}</body></html>"
    assert "cdn.jsdelivr.net" in html.unescape(page)
    inlined = offline.inline_frames(page)
    frame = html.unescape(re.search(r'srcdoc="([^"]*)"', inlined).group(1))
    assert "L.AwesomeMarkers" in frame and not re.search(r'<(script|link)\b[^>]*(src|href)="https?://', frame)
    assert "<p>a notebook</p>" in inlined
