from mlx_distributed.stopping import StopText, end_of_sequence_ids
from mlx_lm.utils import load_tokenizer


def test_stop_string_cuts_text():
    stop = StopText(["END"])
    assert stop.feed("hello E") == "hello "
    assert stop.feed("hello EN") == ""
    assert stop.feed("hello END and more") == ""
    assert stop.stopped
    assert stop.text == "hello "


def test_partial_stop_string_is_released_when_it_diverges():
    stop = StopText(["END"])
    assert stop.feed("abc E") == "abc "
    assert stop.feed("abc Ex") == "Ex"
    assert not stop.stopped


def test_held_back_text_is_flushed_at_the_end():
    stop = StopText(["END"])
    assert stop.feed("abc EN") == "abc "
    assert stop.flush() == "EN"


def test_no_stop_strings_emits_everything():
    stop = StopText(None)
    assert stop.feed("ab") == "ab"
    assert stop.feed("abc") == "c"


def test_end_of_turn_token_comes_from_chat_template(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    ids = end_of_sequence_ids(tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ids == {im_end}
    assert im_end != 2


def test_end_of_turn_added_when_eos_differs(tmp_path):
    from tiny_models import write_tokenizer

    write_tokenizer(tmp_path, eos_token="<unk>")
    tokenizer = load_tokenizer(tmp_path)
    ids = end_of_sequence_ids(tokenizer)
    assert ids == {
        tokenizer.convert_tokens_to_ids("<unk>"),
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
    }
