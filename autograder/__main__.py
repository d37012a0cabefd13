import sys

# nbformat imports jsonschema, which, when the optional rfc3987_syntax is installed, builds its
# grammar for the "iri" format check at import: 5-10 s of CPU here, in every grader process
# (grade-class and each worker). The grader never asks for format checks (nbformat validates
# without a FormatChecker), so it is marked absent in this process only: jsonschema then skips
# that one optional checker. Kernels and nbgrader's own processes are not affected.
sys.modules.setdefault("rfc3987_syntax", None)

from autograder.cli import main  # noqa: E402

sys.exit(main())
