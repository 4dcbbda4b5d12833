"""mako's config edits, exactly undone: the pure text functions, and the file handling on disk.
(The bus side runs against the real mako in tests/integration/test_dnd_desktops.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detoxd.agent.dnd import mako
from detoxd.agent.dnd.mako import BLOCK, MakoBackend, add_block, config_hides, remove_block


@given(st.text(alphabet=st.characters(blacklist_characters="\r", blacklist_categories=("Cs",))))
def test_adding_and_removing_the_section_gives_back_every_byte(text: str) -> None:
    with_block, newline = add_block(text)
    assert with_block.endswith(BLOCK)
    assert config_hides(with_block)
    assert remove_block(with_block, newline) == text


def test_a_user_edit_around_the_section_is_kept() -> None:
    with_block, newline = add_block("font=DejaVu Sans 11")
    edited = with_block + "[urgency=critical]\nborder-color=#ff0000\n"
    kept = "font=DejaVu Sans 11\n[urgency=critical]\nborder-color=#ff0000\n"
    assert remove_block(edited, newline) == kept, "the user's new section stays on its own line"
    inside = with_block.replace("invisible=1", "invisible=1\nbackground-color=#000000")
    assert remove_block(inside, newline) == "font=DejaVu Sans 11\n"
    assert remove_block("font=x\n", False) is None, "no section: nothing to take out"


@pytest.mark.parametrize(("text", "hides"), [
    ("[mode=do-not-disturb]\ninvisible=1\n", True),
    ("[mode=do-not-disturb]\ninvisible = true\n", True),
    ("[mode=do-not-disturb]\ninvisible=1\ninvisible=0\n", False),
    ("[mode=do-not-disturb]\ndefault-timeout=5000\n", False),
    ("invisible=1\n", False),
    ("[mode=do-not-disturb]\n[app-name=x]\ninvisible=1\n", False),
    ("# [mode=do-not-disturb]\n# invisible=1\n", False),
])
def test_whether_a_config_hides_notifications_in_the_mode(text: str, hides: bool) -> None:
    assert config_hides(text) is hides


def test_config_argument_forms() -> None:
    assert mako._config_argument(["-c", "/a"]) == "/a"
    assert mako._config_argument(["--config", "/b"]) == "/b"
    assert mako._config_argument(["--config=/c"]) == "/c"
    assert mako._config_argument(["-c/d"]) == "/d"
    assert mako._config_argument(["--anchor", "top-right"]) is None


class OfflineMako(MakoBackend):
    """The real file handling; the two bus calls it makes (the server's pid, Reload) answered here."""

    def __init__(self, home: Path) -> None:
        super().__init__({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
        self.reloads = 0

    def _server_pid(self) -> int | None:
        return None

    def _reload(self) -> None:
        self.reloads += 1


def test_no_config_at_all_is_created_and_removed_with_its_directories(tmp_path: Path) -> None:
    backend = OfflineMako(tmp_path)
    backend._make_config_hide()
    path = tmp_path / ".config/mako/config"
    assert path.read_text() == BLOCK and backend.reloads == 1
    backend._take_block_out()
    assert not (tmp_path / ".config").exists(), "what detoxd created is gone, directories too"


def test_a_symlinked_config_stays_a_symlink_and_gets_its_bytes_back(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "mako").write_text("font=DejaVu Sans 11")
    (tmp_path / ".config/mako").mkdir(parents=True)
    link = tmp_path / ".config/mako/config"
    link.symlink_to(dotfiles / "mako")
    (dotfiles / "mako").chmod(0o600)
    backend = OfflineMako(tmp_path)
    backend._make_config_hide()
    assert link.is_symlink() and config_hides(link.read_text())
    backend._take_block_out()
    assert link.is_symlink()
    assert (dotfiles / "mako").read_text() == "font=DejaVu Sans 11"
    assert (dotfiles / "mako").stat().st_mode & 0o777 == 0o600


def test_a_users_own_do_not_disturb_section_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / ".config/mako/config"
    path.parent.mkdir(parents=True)
    path.write_text("[mode=do-not-disturb]\ninvisible=1\n")
    backend = OfflineMako(tmp_path)
    backend._make_config_hide()
    assert path.read_text() == "[mode=do-not-disturb]\ninvisible=1\n" and backend.reloads == 0


def test_an_unwritable_config_is_a_problem_with_the_lines_to_add(tmp_path: Path) -> None:
    path = tmp_path / ".config/mako/config"
    path.parent.mkdir(parents=True)
    path.write_text("font=x\n")
    backend = OfflineMako(tmp_path)

    def refuse(target: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied")

    original, mako._write = mako._write, refuse  # root ignores file modes: refuse the write itself
    try:
        with pytest.raises(mako.MakoConfigError) as raised:
            backend._make_config_hide()
    finally:
        mako._write = original
    assert "Permission denied" in raised.value.problem.reason
    assert "invisible=1" in raised.value.problem.fix and str(path) in raised.value.problem.fix
