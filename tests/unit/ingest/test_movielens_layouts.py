"""The MovieLens loader reads each layout into the same items and events (tiny files here)."""

import pytest

from service.ingest.movielens import NotMovieLens, load_movielens

FLAGS = ["0"] * 19


def _flags(*positions: int) -> str:
    flags = list(FLAGS)
    for position in positions:
        flags[position] = "1"
    return "|".join(flags)


def _write_latest(folder):
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Animation|Children\n2,Heat (1995),Crime\n"
    )
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n7,1,4.0,900\n7,2,3.5,960\n"
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n7,1,pixar,901\n")


def _write_100k(folder):
    (folder / "u.item").write_text(
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4)}\n"
        f"2|Heat (1995)|01-Jan-1995||http://x|{_flags(6)}\n",
        encoding="latin-1",
    )
    (folder / "u.data").write_text("7\t1\t4\t900\n7\t2\t3\t960\n", encoding="latin-1")


def _write_recbole(folder):
    (folder / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's\n2\tHeat\t1995\tCrime\n"
    )
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n7\t1\t4\t900\n7\t2\t3\t960\n"
    )


@pytest.mark.parametrize("write", [_write_latest, _write_100k, _write_recbole])
def test_every_layout_gives_the_same_films_and_ratings(tmp_path, write):
    write(tmp_path)
    data = load_movielens(tmp_path)
    toy_story = next(item for item in data.items if item.item_id == "1")
    assert toy_story.title == "Toy Story (1995)"
    assert toy_story.categories == ("Animation", "Children")
    assert [(e.event_id, e.user_id, e.item_id, e.type, e.ts) for e in data.events] == [
        ("ml-7-1", "7", "1", "rate", 900.0),
        ("ml-7-2", "7", "2", "rate", 960.0),
    ]
    assert data.events[0].value == 4.0


def test_tags_become_the_item_text(tmp_path):
    _write_latest(tmp_path)
    assert load_movielens(tmp_path).items[0].text == "pixar"


def test_a_folder_that_is_not_movielens_is_refused_by_name(tmp_path):
    (tmp_path / "ratings.csv").write_text("a,b\n")  # no movies.csv
    with pytest.raises(NotMovieLens, match="not a MovieLens folder"):
        load_movielens(tmp_path)
