"""FFHQ acquisition against a loopback server, with injected faults."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from support import REPO, data_section, md5

from pipeline.config import ConfigError, DataConfig
from pipeline.data import ffhq
from pipeline.data.__main__ import prepare
from pipeline.download import DownloadError, drive_confirm_url
from pipeline.files import file_digest


def run(fake, tmp_path, **overrides):
    cfg = DataConfig.from_dict(data_section(fake, tmp_path / "ffhq", **overrides))
    return prepare(cfg, threads=2)


def assert_verified(rows, fake):
    for row in rows:
        assert file_digest(row.path, "md5") == md5(fake.images[row.image_id]), row.image_id


def requests_for(fake, path):
    return [rng for p, rng in fake.requests if p == path]


def test_mirror_download_gives_verified_split(fake_ffhq, tmp_path):
    rows = run(fake_ffhq, tmp_path)
    assert sorted(row.image_id for row in rows) == sorted(fake_ffhq.images)
    assert_verified(rows, fake_ffhq)
    assert {row.split for row in rows} == {"train", "test"}
    assert sum(row.split == "test" for row in rows) == 3  # floor(12 * 0.25)
    assert not list((tmp_path / "ffhq").rglob("*.part"))


def test_only_the_subsample_is_downloaded(fake_ffhq, tmp_path):
    rows = run(fake_ffhq, tmp_path, subsample=5)
    assert len(rows) == 5
    downloaded = {p.stem for p in (tmp_path / "ffhq" / "images1024x1024").rglob("*.png")}
    assert downloaded == {row.image_id for row in rows}


@pytest.mark.parametrize("fault", ["500", "slow"])  # an error status; no answer within timeout_s
def test_transient_fault_is_retried(fake_ffhq, tmp_path, fault):
    path = fake_ffhq.mirror_path("00003")
    fake_ffhq.fault(path, fault)
    rows = run(fake_ffhq, tmp_path)
    assert len(requests_for(fake_ffhq, path)) == 2
    assert_verified(rows, fake_ffhq)


def test_cut_connection_resumes_with_range(fake_ffhq, tmp_path):
    path = fake_ffhq.mirror_path("00004")
    fake_ffhq.fault(path, "cut")
    rows = run(fake_ffhq, tmp_path)
    half = len(fake_ffhq.images["00004"]) // 2
    assert requests_for(fake_ffhq, path) == [None, f"bytes={half}-"]
    assert_verified(rows, fake_ffhq)


def test_bytes_that_never_match_their_md5_are_rejected(fake_ffhq, tmp_path):
    fake_ffhq.md5_override["00006"] = "0" * 32
    with pytest.raises(DownloadError, match="1 of 12 downloads failed: 00006"):
        run(fake_ffhq, tmp_path)
    assert len(requests_for(fake_ffhq, fake_ffhq.mirror_path("00006"))) == 3  # 1 + retries
    final = tmp_path / "ffhq" / fake_ffhq.file_path("00006")
    assert not final.exists()
    assert not final.with_name(final.name + ".part").exists()
    assert (tmp_path / "ffhq" / fake_ffhq.file_path("00007")).exists()  # the others still landed


def test_missing_file_fails_without_retrying(fake_ffhq, tmp_path):
    fake_ffhq.missing.add("00002")
    with pytest.raises(DownloadError, match="1 of 12 downloads failed: 00002"):
        run(fake_ffhq, tmp_path)
    assert len(requests_for(fake_ffhq, fake_ffhq.mirror_path("00002"))) == 1


def test_google_drive_confirm_page_is_followed(fake_ffhq, tmp_path):
    rows = run(fake_ffhq, tmp_path, ffhq={"mirror": None})
    assert_verified(rows, fake_ffhq)
    assert len(requests_for(fake_ffhq, "/uc")) == 12
    assert len(requests_for(fake_ffhq, "/download")) == 12


def test_google_drive_resume_goes_to_the_confirmed_url(fake_ffhq, tmp_path):
    fake_ffhq.fault("/download", "cut")
    rows = run(fake_ffhq, tmp_path, ffhq={"mirror": None, "workers": 1})
    assert_verified(rows, fake_ffhq)
    ranges = [r for r in requests_for(fake_ffhq, "/download") if r]
    assert len(ranges) == 1 and len(requests_for(fake_ffhq, "/uc")) == 12


def test_google_drive_quota_stops_with_advice(fake_ffhq, tmp_path):
    fake_ffhq.fault("/uc", "quota")
    with pytest.raises(DownloadError, match="quota is exceeded.*data.ffhq.mirror.*data.source: folder"):
        run(fake_ffhq, tmp_path, ffhq={"mirror": None, "workers": 1})
    assert not list((tmp_path / "ffhq").rglob("*.png"))


# RFC 6761: names under .invalid never resolve, online or not.
@pytest.mark.parametrize("where", ["metadata", "mirror"])
def test_a_host_that_does_not_resolve_fails_at_once_with_advice(fake_ffhq, tmp_path, where):
    """Not transient: no retry, no backoff; the message says how to get FFHQ another way."""
    broken = {"metadata": {"metadata": "https://ffhq.invalid/ffhq-dataset-v2.json"},
              "mirror": {"mirror": "http://ffhq.invalid/ffhq"}}[where]
    started = time.monotonic()
    with pytest.raises(DownloadError) as failure:
        run(fake_ffhq, tmp_path, ffhq={"retries": 5, "backoff_s": 2.0, **broken})
    assert time.monotonic() - started < 2.0  # one backoff would already take 2 s
    message = str(failure.value)
    assert "cannot resolve ffhq.invalid" in message and "\n" not in message
    assert "data.ffhq.mirror" in message and "data.source: folder" in message and "data.folder" in message
    assert not list((tmp_path / "ffhq").rglob("*.png")) and not list((tmp_path / "ffhq").rglob("*.part"))


def test_the_data_cli_logs_whole_lines_without_progress_bar_redraws(fake_ffhq, tmp_path):
    """A rule's log is stderr redirected to a file: progress arrives as plain lines."""
    section = data_section(fake_ffhq, tmp_path / "ffhq", subsample=6)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.data", "--data-json", json.dumps(section), "--out", str(tmp_path / "split.csv")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    assert any(line.startswith("FFHQ images1024x1024: 100%") for line in result.stderr.splitlines())


def test_drive_confirm_url_reads_old_style_link():
    page = '<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbCd&amp;id=XYZ">Download anyway</a>'
    assert drive_confirm_url(page, "https://drive.google.com/uc?id=XYZ") == (
        "https://drive.google.com/uc?export=download&confirm=AbCd&id=XYZ"
    )
    assert drive_confirm_url("<html>nothing here</html>", "https://x/") is None


@pytest.mark.parametrize("bad_path", ["../outside.png", "images/../../outside.png", "/tmp/outside.png", "C:\\outside.png"])
def test_metadata_paths_outside_the_data_dir_are_refused(fake_ffhq, tmp_path, bad_path):
    fake_ffhq.path_override["00001"] = bad_path
    with pytest.raises(ffhq.MetadataError, match="entry 1 image: refusing"):
        run(fake_ffhq, tmp_path)
    assert not (tmp_path / "outside.png").exists()
    assert not list((tmp_path / "ffhq").rglob("*.png"))  # refused before any download


def test_metadata_with_wrong_md5_is_refused(fake_ffhq, tmp_path):
    with pytest.raises(DownloadError, match="FFHQ metadata: checksum mismatch"):
        run(fake_ffhq, tmp_path, ffhq={"metadata_md5": "f" * 32})
    assert not (tmp_path / "ffhq" / ffhq.METADATA_NAME).exists()


def test_metadata_url_needs_an_md5(fake_ffhq, tmp_path):
    with pytest.raises(ConfigError, match="data.ffhq.metadata_md5"):
        run(fake_ffhq, tmp_path, ffhq={"metadata_md5": None})


def test_local_metadata_file_and_thumbnails(fake_ffhq, tmp_path):
    local = tmp_path / "meta.json"
    local.write_bytes(fake_ffhq.metadata_bytes())
    rows = run(fake_ffhq, tmp_path, ffhq={"metadata": str(local), "metadata_md5": None, "kind": "thumbnails128x128"})
    assert all("thumbnails128x128" in row.path for row in rows)
    assert_verified(rows, fake_ffhq)


def test_rerun_reuses_verified_files_and_replaces_corrupt_ones(fake_ffhq, tmp_path):
    run(fake_ffhq, tmp_path)
    corrupt = tmp_path / "ffhq" / fake_ffhq.file_path("00008")
    corrupt.write_bytes(b"garbage")
    fake_ffhq.requests.clear()
    rows = run(fake_ffhq, tmp_path)
    assert [p for p, _ in fake_ffhq.requests if p.startswith("/mirror")] == [fake_ffhq.mirror_path("00008")]
    assert_verified(rows, fake_ffhq)
