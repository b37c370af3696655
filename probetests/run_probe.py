"""Runs one probe test class for ctest.

Exit status: 0 when every test ran and passed, 77 when a test was skipped
(ctest's SKIP_RETURN_CODE: the entry shows as skipped, not as passed), 1 when
a test failed or nothing ran at all.
"""
import sys
import unittest


def main():
    if len(sys.argv) != 2:
        print("usage: run_probe.py MODULE.CLASS", file=sys.stderr)
        return 1
    suite = unittest.defaultTestLoader.loadTestsFromName(sys.argv[1])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful() or result.testsRun == 0:
        return 1
    if result.skipped:
        for test, reason in result.skipped:
            print("skipped %s: %s" % (test.id(), reason))
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
