"""LLM Lab's autograder: nbgrader underneath, with per-cell limits, restored tests and a sandbox.

    python -m autograder check NOTEBOOK         visible tests (learners, GitHub Classroom)
    python -m autograder grade NOTEBOOK         visible + hidden tests (instructors, Linux)
    python -m autograder grade-class FOLDER --assignment NAME --out DIR
"""
