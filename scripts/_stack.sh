# Sourced by the other scripts: which dependency stack, and so which virtualenv.
#
#   DEPS=pins   (default) requirements.txt into .venv: the oldest supported releases
#   DEPS=latest requirements-latest.txt into .venv-latest: the newest releases
case "${DEPS:-pins}" in
    pins)
        VENV=".venv"
        REQUIREMENTS="requirements.txt"
        ;;
    latest)
        VENV=".venv-latest"
        REQUIREMENTS="requirements-latest.txt"
        ;;
    *)
        echo "DEPS must be 'pins' or 'latest', not '${DEPS}'" >&2
        exit 2
        ;;
esac
