"""A version's size reads the same in `llmcloud model list` and on the console's Models
page, in the decimal units `plan`'s model fit speaks (the console said 1.5 KiB where the
CLI said 1.5 KB, and GiB where the fit check said GB)."""

from llmcloud.cli.model_commands import _listing
from llmcloud.console.render import environment
from llmcloud.providers.model_versions import size_text


def test_sizes_are_decimal():
    assert [size_text(n) for n in (None, 0, 999, 1000, 1536, 30_500_000_000)] == [
        "–", "0 B", "999 B", "1.0 KB", "1.5 KB", "30.5 GB"]


def test_a_size_that_rounds_up_reads_in_the_next_unit():
    assert [size_text(n) for n in (999_960, 999_960_000, 2_000_000_000_000)] == [
        "1.0 MB", "1.0 GB", "2000.0 GB"]


def test_the_console_and_the_cli_print_one_size():
    size = 14_900_000_000
    listing = _listing({"uri": "s3://b/models/m", "name": "m", "versions": [
        {"version": "v1", "complete": True, "size_bytes": size, "files": 3,
         "uploaded": "2026-11-30", "use": None}]})
    assert environment.filters["size"](size) == "14.9 GB"
    assert " 14.9 GB " in listing
