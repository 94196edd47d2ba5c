"""`rendio models import`: validated whole, written all-or-nothing, upserting by slug."""

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from rendio.catalog.importer import (
    DEFAULT_CATALOG,
    CatalogError,
    import_models,
    load_catalog,
    parse_catalog,
)
from rendio.catalog.models import VideoModel
from rendio.catalog.schemas import model_id_for
from rendio.platform.db import sync_engine
from tests.helpers.processes import run_cli

ENTRY = """
  - slug: {slug}
    name: {name}
    category: text-to-video
    provider: local
    provider_model_id: local-v1
    cost_per_generation: {cost}
    settings:
      durations: [2]
      default_duration: 2
      aspect_ratios: ["1:1"]
      default_aspect_ratio: "1:1"
      resolutions: ["360p"]
      default_resolution: "360p"
"""


def catalog(*entries: tuple[str, str, int]) -> str:
    return "models:" + "".join(
        ENTRY.format(slug=slug, name=name, cost=cost) for slug, name, cost in entries
    )


def snapshot(url: str) -> list[tuple]:
    engine = sync_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(VideoModel.slug, VideoModel.name, VideoModel.cost_per_generation).order_by(
                VideoModel.slug
            )
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_packaged_default_catalog_is_valid() -> None:
    entries = load_catalog(DEFAULT_CATALOG)
    local = [e for e in entries if e.provider == "local"]
    assert len(local) == 1 and local[0].is_available
    assert {e.provider for e in entries} == {"local", "fal", "openai", "runway", "replicate"}


def test_import_inserts_then_updates_by_slug(clean_database: str, tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(catalog(("extra-a", "Extra A", 2), ("extra-b", "Extra B", 3)))
    result = run_cli(clean_database, "models", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert "2 new, 0 updated" in result.stdout

    path.write_text(catalog(("extra-a", "Extra A v2", 7)))
    result = run_cli(clean_database, "models", "import", str(path))
    assert "0 new, 1 updated" in result.stdout
    rows = dict((slug, (name, cost)) for slug, name, cost in snapshot(clean_database))
    assert rows["extra-a"] == ("Extra A v2", 7)
    assert rows["extra-b"] == ("Extra B", 3)
    assert "rendio-local" in rows  # untouched by the import

    engine = sync_engine(clean_database)
    with engine.connect() as conn:
        model_id = conn.execute(
            select(VideoModel.id).where(VideoModel.slug == "extra-a")
        ).scalar_one()
    engine.dispose()
    assert model_id == model_id_for("extra-a")


def test_json_catalog_is_accepted(clean_database: str, tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "models.json"
    path.write_text(json.dumps(yaml.safe_load(catalog(("json-model", "From JSON", 4)))))
    result = run_cli(clean_database, "models", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert ("json-model", "From JSON", 4) in snapshot(clean_database)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("models: [", "not valid YAML"),
        ("- just a string", "models"),
        (catalog(("ok", "Ok", 1), ("ok", "Dup", 1)), "appears more than once"),
        (catalog(("bad", "Bad", 0)), "cost_per_generation"),
        (catalog(("Bad Slug!", "Bad", 1)), "slug"),
        (catalog(("ok", "Ok", 1)).replace("provider: local", "provider: acme"), "provider"),
        (
            catalog(("ok", "Ok", 1)).replace("default_duration: 2", "default_duration: 9"),
            "default_duration must be one of",
        ),
        (catalog(("ok", "Ok", 1)) + "    surprise: true\n", "surprise"),
        ("models: []", "models"),
    ],
)
def test_bad_catalogs_are_refused_with_a_clear_message(document: str, expected: str) -> None:
    with pytest.raises(CatalogError, match=expected):
        parse_catalog(document, source="test.yaml")


def test_error_names_the_offending_model() -> None:
    document = catalog(("good", "Good", 1), ("broken", "Broken", -1))
    with pytest.raises(CatalogError) as caught:
        parse_catalog(document, source="test.yaml")
    assert "models[1] (broken).cost_per_generation" in str(caught.value)


def test_bad_file_changes_nothing(clean_database: str, tmp_path: Path) -> None:
    before = snapshot(clean_database)
    path = tmp_path / "models.yaml"
    # The first entry is fine, the second is not: nothing at all may be written.
    path.write_text(catalog(("fine-model", "Fine", 1), ("rendio-local", "Hijacked", 0)))
    result = run_cli(clean_database, "models", "import", str(path))
    assert result.returncode == 1
    assert "cost_per_generation" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(clean_database) == before


def test_missing_file_is_a_clear_error(clean_database: str, tmp_path: Path) -> None:
    result = run_cli(clean_database, "models", "import", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr


def test_list_shows_enabled_and_offered(clean_database: str) -> None:
    result = run_cli(clean_database, "models", "list")
    assert result.returncode == 0, result.stderr
    assert "rendio-local" in result.stdout
    assert "sora-2" in result.stdout
    assert "no (RENDIO_FAL_KEY not set)" in result.stdout
    keyed = run_cli(clean_database, "models", "list", RENDIO_FAL_KEY="k")
    [kling] = [line for line in keyed.stdout.splitlines() if "fal-kling-2-1" in line]
    assert "yes" in kling


def test_upsert_is_one_transaction(clean_database: str) -> None:
    entries = parse_catalog(catalog(("tx-a", "A", 1), ("tx-b", "B", 1)))
    engine = sync_engine(clean_database)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        import_models(conn, entries)
        raise RuntimeError("crash after the upsert, before commit")
    engine.dispose()
    assert not {"tx-a", "tx-b"} & {slug for slug, _, _ in snapshot(clean_database)}
