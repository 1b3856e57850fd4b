"""The CI rule of tests.harness.ci_rules, run on throwaway suites with pytester: every way a real-process test
can prove nothing (module-level skip, importorskip, skip mark, xfail, xpass) fails the run; a skipped unit test
does not."""

from __future__ import annotations

import pytest

HOLES = {
    "tests/e2e/test_module_skip.py": (
        "import pytest\npytest.skip('no cluster', allow_module_level=True)\ndef test_never(): pass\n"
    ),
    "tests/providers/test_importorskip.py": (
        "import pytest\npytest.importorskip('no_such_module_for_ci_rules')\ndef test_never(): pass\n"
    ),
    "tests/chaos/test_xfail.py": "import pytest\n@pytest.mark.xfail\ndef test_known_bad(): assert False\n",
    "tests/local_provider/test_xpass.py": "import pytest\n@pytest.mark.xfail\ndef test_passes_anyway(): pass\n",
    "tests/contract/test_skip_mark.py": "import pytest\n@pytest.mark.skip(reason='later')\ndef test_later(): pass\n",
}


def _suite(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    for path, text in files.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


@pytest.mark.parametrize("path", sorted(HOLES))
def test_each_hole_fails_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv("CI", "true")
    _suite(pytester, {path: HOLES[path], "tests/e2e/test_fine.py": "def test_fine(): pass\n"})
    result = pytester.runpytest_inprocess("-p", "tests.harness.ci_rules", "-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(["CI: 1 real-process test(s) or module(s) were skipped or xfailed*", f"*{path}*"])


def test_unit_skips_and_local_runs_are_allowed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _suite(pytester, {"tests/unit/test_skip.py": "import pytest\n@pytest.mark.skip\ndef test_s(): pass\n"})
    monkeypatch.setenv("CI", "true")
    assert pytester.runpytest_inprocess("-p", "tests.harness.ci_rules").ret == pytest.ExitCode.OK
    _suite(pytester, HOLES)
    monkeypatch.delenv("CI")
    assert pytester.runpytest_inprocess("-p", "tests.harness.ci_rules").ret == pytest.ExitCode.OK


def test_the_secret_hygiene_scan_runs_last(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        {
            "tests/e2e/test_zz_secret_hygiene.py": "def test_scan(): pass\n",
            "tests/e2e/test_a.py": "def test_a(): pass\n",
            "tests/zz_later/test_b.py": "def test_b(): pass\n",
        },
    )
    result = pytester.runpytest_inprocess("-p", "tests.harness.ci_rules", "--collect-only", "-q")
    collected = [line for line in result.stdout.lines if "::" in line]
    assert collected[-1] == "tests/e2e/test_zz_secret_hygiene.py::test_scan", collected
