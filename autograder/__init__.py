"""LLM Lab's autograder: nbgrader underneath, with per-cell limits, restored tests, an in-kernel
guard and (on Linux) an operating-system sandbox whose limits `autograder.sandbox` states.

    python -m autograder check NOTEBOOK         visible tests (learners, GitHub Classroom)
    python -m autograder grade NOTEBOOK         visible + hidden tests (instructors, Linux)
    python -m autograder grade-class FOLDER --assignment NAME --out DIR
"""
