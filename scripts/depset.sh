# Sourced by scripts/setup and scripts/test: which dependency set (DETOXD_DEPS), its venv and pins.
#   debian (the default): .venv, Debian 12's python3-* packages (requirements/debian12-apt.txt,
#       versions in requirements/debian12-system.txt) + requirements/debian12.txt from PyPI.
#       The default because the README's install is the .deb, which runs on exactly these.
#   pypi: .venv-pypi, requirements/pypi.txt: what `pip install detoxd[report]` gives today.
# shellcheck shell=bash
case "${DETOXD_DEPS:-debian}" in
    debian|debian12) deps_set=debian12; venv=.venv
        pins=(requirements/debian12.txt requirements/debian12-system.txt) ;;
    pypi) deps_set=pypi; venv=.venv-pypi; pins=(requirements/pypi.txt) ;;
    *) echo "DETOXD_DEPS=${DETOXD_DEPS}: expected debian or pypi" >&2; exit 2 ;;
esac
# Bumped when the way a venv is made changes, so that existing venvs are made anew.
venv_recipe=2

venv_stamp() {
    { echo "recipe $venv_recipe"; cat "${pins[@]}"; } | sha256sum | cut -d' ' -f1
}

# Makes "$venv" from the pins unless it was made from these very pins; installs detoxd editable.
make_venv() {
    local stamp="$venv/detoxd-pins.sha256" site
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$(venv_stamp)" ]; then
        echo "Making $venv (dependency set $deps_set) from ${pins[0]}"
        rm -rf "$venv"
        # No system site packages: nothing that happens to be installed on the machine (by apt,
        # or by hand under /usr/local) can stand in for a pinned version.
        /usr/bin/python3 -m venv "$venv"
        site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        if [ "$deps_set" = debian12 ]; then
            # Debian's python3-* packages, as the .deb's /usr/bin/python3 sees them, after the
            # venv's own (the test tools): a path, not --system-site-packages, which would add
            # /usr/local's too.
            echo /usr/lib/python3/dist-packages > "$site/debian12-system.pth"
        else
            # Only `gi` from Debian (python3-gi, for pystray's AppIndicator back-end and the
            # GSettings back-ends), none of Debian's other packages. PyGObject is no declared
            # dependency: it is the binding to the system's GLib/GTK and typelibs, so Debian's
            # build is the honest one (PyPI's current PyGObject needs a newer GLib than Debian 12
            # has and compiles against the same system libraries; an older one needs a compiler
            # and -dev packages). matplotlib, a declared dependency (`report`), comes from PyPI.
            # A link in site-packages, not a .pth: copies of the venv (tests/otheruser.py) keep it.
            ln -s /usr/lib/python3/dist-packages/gi "$site/gi"
        fi
        # Exactly the pinned files: hashes checked, nothing resolved (no deps), so two machines
        # get identical venvs.
        "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes --no-deps \
            -r "requirements/$deps_set.txt"
        install_detoxd
        "$venv/bin/python" scripts/depset.py check "$deps_set"
        venv_stamp > "$stamp"
    else
        install_detoxd
    fi
}

# The editable install (quick): no build isolation, so no unpinned setuptools is fetched.
install_detoxd() {
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
}
