"""`charrnn sample`: its options (top-p, stop text, several samples, a prime file), and the values
it refuses in one line `Error: ...` with nothing on stdout."""
import pytest

from clihelp import assert_one_line_error, one_line_error, run


def test_top_p_near_zero_is_argmax(tiny_run):
    ckpt = tiny_run[0] / "best.npz"
    greedy = run("sample", "--ckpt", ckpt, "--length", 60, "--temperature", 0)
    nucleus = run("sample", "--ckpt", ckpt, "--length", 60, "--top-p", 1e-9, "--seed", 3)
    assert nucleus.exit_code == 0 and nucleus.stdout == greedy.stdout
    full = run("sample", "--ckpt", ckpt, "--length", 60, "--top-p", 1.0, "--seed", 3)
    default = run("sample", "--ckpt", ckpt, "--length", 60, "--seed", 3)
    assert full.stdout == default.stdout
    assert run("sample", "--ckpt", ckpt, "--top-p", 0).exit_code == 1


def test_stop_ends_a_sample_after_the_stop_text(tiny_run):
    ckpt = tiny_run[0] / "best.npz"
    for seed in range(5):
        result = run("sample", "--ckpt", ckpt, "--length", 2000, "--stop", "e ", "--seed", seed,
                     "--prime", "e ")
        assert result.exit_code == 0
        generated = result.stdout[len("e "):-1]  # the prime does not count; a newline follows
        assert generated.endswith("e ") and generated.find("e ") == len(generated) - 2


def test_num_samples_are_separate_and_marked(tiny_run):
    ckpt = tiny_run[0] / "best.npz"
    result = run("sample", "--ckpt", ckpt, "--length", 50, "--num-samples", 3, "--seed", 1,
                 "--prime", "ROMEO:")
    assert result.exit_code == 0, result.output
    parts = result.stdout.split("\n=== sample ")
    assert result.stdout.startswith("=== sample 1/3 ===\nROMEO:") and len(parts) == 3
    samples = [p.split("===\n", 1)[1] for p in ["=== sample " + parts[0][11:]] + parts[1:]]
    assert all(s.startswith("ROMEO:") and len(s.rstrip("\n")) <= 56 for s in samples)
    assert len(set(samples)) == 3
    single = run("sample", "--ckpt", ckpt, "--length", 50, "--seed", 1)
    assert "===" not in single.stdout


def test_prime_file(tiny_run, tmp_path):
    ckpt = tiny_run[0] / "best.npz"
    prime = tmp_path / "prime.txt"
    prime.write_text("First Citizen:\nWe", encoding="utf-8")
    from_file = run("sample", "--ckpt", ckpt, "--prime-file", prime, "--length", 40, "--seed", 2)
    inline = run("sample", "--ckpt", ckpt, "--prime", "First Citizen:\nWe", "--length", 40, "--seed", 2)
    assert from_file.exit_code == 0 and from_file.stdout == inline.stdout
    assert from_file.stdout.startswith("First Citizen:\nWe")
    assert run("sample", "--ckpt", ckpt, "--prime-file", prime, "--prime", "x").exit_code == 2
    one_line_error(run("sample", "--ckpt", ckpt, "--prime-file", tmp_path / "no.txt"),
                   "prime file")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ab\xffcd")
    one_line_error(run("sample", "--ckpt", ckpt, "--prime-file", bad), "byte offset 2")


def test_negative_sampling_seed_is_refused(saved_run):
    """Found by test_properties: numpy's own ValueError for a negative seed was a traceback."""
    result = run("sample", "--ckpt", saved_run / "last.npz", "--length", 20, "--seed", -1)
    assert_one_line_error(result, "seed must be a whole number, 0 or more, got -1")
    assert result.stdout == ""


@pytest.mark.parametrize("option, value, name", [
    ("--temperature", "nan", "temperature"), ("--temperature", "inf", "temperature"),
    ("--temperature", "-inf", "temperature"), ("--top-p", "nan", "top_p"),
    ("--top-p", "inf", "top_p"),
])
def test_non_finite_sampling_options_are_refused(saved_run, option, value, name):
    """Issue 15, point 4: `--temperature nan` printed one character repeated, exit 0."""
    result = run("sample", "--ckpt", saved_run / "last.npz", "--length", 20, "--seed", 1,
                 option, value)
    assert_one_line_error(result, name, "finite")
    assert result.stdout == ""


def test_prime_with_unknown_characters(saved_run):
    result = run("sample", "--ckpt", saved_run / "last.npz", "--prime", "caf\u00e9 \u2603")
    assert_one_line_error(result, "'é'", "'☃'")
    assert result.stdout == ""
