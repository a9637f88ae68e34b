"""Engine drivers that run outside the main process: the atheris harness
and the build of the coverage-instrumented extension it loads."""
