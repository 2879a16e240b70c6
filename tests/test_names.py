"""Every name that becomes a directory is matched in full: a trailing newline is not a name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from generation.adapter_registry import check_name as adapter_name
from generation.models import check_name as model_name
from retrieval.catalog import check_name as collection_name
from retrieval.errors import InvalidName
from tuning.probe import check_name as classifier_name

CHECKS: list[Callable[[str], None]] = [collection_name, model_name, adapter_name, classifier_name]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("bad", ["a\n", "a\r\n", "kb\n", "a\nb", "\na", "a\x00", "a b", "../a", ""])
def test_names_with_line_breaks_or_odd_characters_are_refused(check: Callable[[str], None],
                                                               bad: str) -> None:
    with pytest.raises((ValueError, InvalidName), match="must be"):
        check(bad)


@pytest.mark.parametrize("check", CHECKS)
def test_plain_names_pass(check: Callable[[str], None]) -> None:
    check("kb-2.v1_x")
