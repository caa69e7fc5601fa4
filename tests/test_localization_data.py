"""Box files: the CSV and XML readers, their validation, and the by-image hold-out."""

import numpy as np
import pytest

from helpers import write_image
from vggnet.data.boxfiles import read_box_csv, read_voc_annotations, split_by_image
from vggnet.data.datasets import image_folder
from vggnet.errors import VGGError
from vggnet.localization.objective import open_boxes

HEADER = "path,wnid,xmin,ymin,xmax,ymax\n"


@pytest.fixture
def folder(tmp_path):
    """train/<class>/<image>: dog 40x30 PNG, dog 50x40 JPEG, cat 30x30 PNG."""
    write_image(tmp_path / "train" / "dog" / "d1.png", (40, 30), seed=1)
    write_image(tmp_path / "train" / "dog" / "d2.jpg", (50, 40), seed=2)
    write_image(tmp_path / "train" / "cat" / "c1.png", (30, 30), seed=3)
    return tmp_path


GOOD = [
    "train/dog/d1.png,dog,1.5,2,20,28.25",
    "train/dog/d1.png,dog,10,0,40.5,30",  # 0.5 px past the right edge: rounding, clipped
    "train/cat/c1.png,cat,0,0,30,30",
    "train/dog/d2.jpg,dog,5,5,45,35",
]


def write_csv(folder, rows, header=True):
    path = folder / "boxes.csv"
    path.write_text((HEADER if header else "") + "\n".join(rows) + "\n")
    return path


def test_csv_reads_images_boxes_classes_and_sizes(folder):
    src = read_box_csv(write_csv(folder, GOOD))
    assert src.classes == ["cat", "dog"] and src.skipped == []
    assert [im.id for im in src.images] == ["train/dog/d1.png", "train/cat/c1.png", "train/dog/d2.jpg"]
    d1 = src.images[0]
    assert d1.path == str(folder / "train/dog/d1.png") and d1.label == 1 and d1.size == (40, 30)
    np.testing.assert_allclose(d1.boxes, [[1.5, 2, 20, 28.25], [10, 0, 40, 30]])
    assert d1.box_classes.tolist() == [1, 1]
    assert src.images[2].size == (50, 40)
    # the same class indices as a classification Source on the same folder
    assert image_folder(folder / "train").classes == src.classes
    view = src.as_source()
    assert view.samples[1] == (str(folder / "train/cat/c1.png"), 0) and len(view) == 3


def test_csv_without_header_and_with_given_classes(folder):
    src = read_box_csv(write_csv(folder, GOOD, header=False), classes=["dog", "cat", "bird"])
    assert src.classes == ["dog", "cat", "bird"]
    assert [im.label for im in src.images] == [0, 1, 0]


def test_image_label_is_the_first_rows_class(folder):
    rows = ["train/dog/d1.png,dog,0,0,10,10", "train/dog/d1.png,cat,10,10,20,20"]
    im = read_box_csv(write_csv(folder, rows)).images[0]
    assert im.label == 1 and im.box_classes.tolist() == [1, 0]
    np.testing.assert_allclose(im.gt_boxes(), [[0, 0, 10, 10]])


BAD = {
    "missing image": ("train/dog/nope.png,dog,0,0,5,5", "image not found"),
    "xmax <= xmin": ("train/dog/d1.png,dog,20,0,20,5", "xmax <= xmin"),
    "ymax <= ymin": ("train/dog/d1.png,dog,0,9,5,3", "ymax <= ymin"),
    "outside": ("train/dog/d1.png,dog,0,0,45,10", "outside the 40x30 image"),
    "unknown class": ("train/dog/d1.png,wolf,0,0,5,5", "unknown class 'wolf'"),
    "bad number": ("train/dog/d1.png,dog,0,zero,5,5", "ymin is not a number"),
    "not finite": ("train/dog/d1.png,dog,0,0,inf,5", "xmax is not finite"),
    "column count": ("train/dog/d1.png,dog,0,0,5", "expected 6 fields"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_every_bad_row_names_file_and_line_and_skip_keeps_the_rest(folder, case):
    row, reason = BAD[case]
    path = write_csv(folder, GOOD[:2] + [row] + GOOD[2:])  # the bad row is line 4 (header is 1)
    with pytest.raises(VGGError) as e:
        read_box_csv(path, classes=["cat", "dog"])
    msg = str(e.value)
    assert msg.startswith(f"{path}:4: ") and reason in msg and "--on-bad-box skip" in msg
    src = read_box_csv(path, classes=["cat", "dog"], on_bad="skip")
    assert sum(len(im.boxes) for im in src.images) == 4  # the good rows, all kept
    assert src.skipped[0].startswith(f"{path}:4: ") and reason in src.skipped[0]


def test_fail_counts_all_problems_and_skip_drops_images_left_without_boxes(folder):
    rows = GOOD + [
        "train/cat/c1.png,cat,5,5,1,1",
        "train/dog/gone.png,dog,0,0,1,1",
        "train/dog/gone.png,dog,0,0,2,2",
    ]
    path = write_csv(folder, rows)
    with pytest.raises(VGGError, match=r":6: xmax <= xmin .*\(3 problems in total\)"):
        read_box_csv(path)
    src = read_box_csv(path, on_bad="skip")
    assert [im.id for im in src.images] == ["train/dog/d1.png", "train/cat/c1.png", "train/dog/d2.jpg"]
    assert len(src.skipped) == 4  # 3 rows, then the image they left without boxes
    assert src.skipped[-1].startswith(f"{path}:7: image train/dog/gone.png dropped")


def test_nothing_usable_and_bad_arguments_are_refused(folder):
    with pytest.raises(VGGError, match="box file not found"):
        read_box_csv(folder / "none.csv")
    with pytest.raises(VGGError, match="no usable boxes"):
        read_box_csv(write_csv(folder, ["train/dog/d1.png,dog,9,9,1,1"]), on_bad="skip")
    with pytest.raises(VGGError, match="on_bad must be one of"):
        read_box_csv(write_csv(folder, GOOD), on_bad="ignore")


# -- XML ----------------------------------------------------------------------------------------


def xml(filename, objects, size=None):
    size_el = (
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    )
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    fn = f"<filename>{filename}</filename>" if filename is not None else ""
    return f"<annotation><folder>x</folder>{fn}{size_el}{objs}</annotation>"


@pytest.fixture
def voc(tmp_path):
    ann, img = tmp_path / "Annotations", tmp_path / "images"
    write_image(img / "dog" / "n1.JPEG", (40, 30), fmt="JPEG", seed=1)
    write_image(img / "dog" / "n2.png", (20, 20), seed=2)
    (ann / "dog").mkdir(parents=True)
    # ImageNet style: <filename> without extension, 0-based inclusive coordinates
    (ann / "dog" / "n1.xml").write_text(
        xml("n1", [("dog", (0, 0, 19, 9)), ("cat", (10, 10, 39, 29))], (40, 30))
    )
    # no <filename>: the XML's stem; <size> twice the file's (annotated before a resize)
    (ann / "dog" / "n2.xml").write_text(xml(None, [("dog", (2, 4, 21, 25))], (40, 40)))
    return ann, img


def test_xml_reads_imagenet_style_annotations(voc):
    ann, img = voc
    src = read_voc_annotations(ann, img)
    assert src.classes == ["cat", "dog"] and src.skipped == []
    n1, n2 = src.images
    assert n1.path == str(img / "dog" / "n1.JPEG") and n1.id == "dog/n1.JPEG" and n1.size == (40, 30)
    assert n1.label == 1 and n1.box_classes.tolist() == [1, 0]
    np.testing.assert_allclose(n1.boxes, [[0, 0, 20, 10], [10, 10, 40, 30]])  # inclusive -> exclusive max
    np.testing.assert_allclose(n2.boxes, [[1, 2, 11, 13]])  # scaled by 1/2 to the file's 20x20
    voc1 = read_voc_annotations(ann, img, pixel_base=1)  # PASCAL VOC: 1-based
    # (-1, -1) is within the 1 px rounding tolerance: clipped to the image
    np.testing.assert_allclose(voc1.images[0].boxes, [[0, 0, 19, 9], [9, 9, 39, 29]])


def test_pascal_voc_files_are_read_one_based(tmp_path):
    ann, img = tmp_path / "Annotations", tmp_path / "JPEGImages"
    write_image(img / "000001.jpg", (100, 80), fmt="JPEG", seed=3)
    ann.mkdir()
    # as the VOC-2007 release writes it: pixels numbered from 1, the whole image is 1..100 x 1..80
    (ann / "000001.xml").write_text(
        "<annotation><folder>VOC2007</folder><filename>000001.jpg</filename><source><database>The VOC2007 "
        "Database</database><annotation>PASCAL VOC2007</annotation></source><size><width>100</width>"
        "<height>80</height><depth>3</depth></size><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>100</xmax><ymax>80</ymax></bndbox></object></annotation>"
    )
    for src in (read_voc_annotations(ann, img), open_boxes(ann, img)):  # open_boxes: what `loc` commands read
        np.testing.assert_allclose(src.images[0].boxes, [[0, 0, 100, 80]])
    np.testing.assert_allclose(
        read_voc_annotations(ann, img, pixel_base=0).images[0].boxes, [[1, 1, 100, 80]]
    )


def test_xml_bad_object_names_file_and_object(voc):
    ann, img = voc
    (ann / "dog" / "n1.xml").write_text(xml("n1.JPEG", [("dog", (0, 0, 19, 9)), ("dog", (5, 5, "x", 9))]))
    with pytest.raises(VGGError, match=r"n1\.xml:object 2: xmax is not a number"):
        read_voc_annotations(ann, img)
    with pytest.raises(VGGError, match=r"n1\.xml:object 1: unknown class 'dog'"):
        read_voc_annotations(ann, img, classes=["cat"])
    src = read_voc_annotations(ann, img, on_bad="skip")
    assert [len(im.boxes) for im in src.images] == [1, 1] and len(src.skipped) == 1


def test_xml_with_doctype_or_entities_is_refused(voc):
    ann, img = voc
    bomb = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>' + xml(
        "n2.png", [("&lol2;", (0, 0, 5, 5))]
    )
    (ann / "dog" / "n2.xml").write_text(bomb)
    with pytest.raises(VGGError, match=r"n2\.xml: DOCTYPE/entity declarations are not allowed"):
        read_voc_annotations(ann, img)
    (ann / "dog" / "n2.xml").write_text("<annotation><object>")
    with pytest.raises(VGGError, match=r"n2\.xml: not well-formed XML"):
        read_voc_annotations(ann, img)
    (ann / "dog" / "n2.xml").write_bytes(b"<annotation>" + b" " * (1 << 20) + b"</annotation>")
    with pytest.raises(VGGError, match=r"n2\.xml: file is too large"):
        read_voc_annotations(ann, img)
    src = read_voc_annotations(ann, img, on_bad="skip")
    assert [im.id for im in src.images] == ["dog/n1.JPEG"] and "too large" in src.skipped[0]


def test_xml_missing_image_is_reported(voc):
    ann, img = voc
    (img / "dog" / "n2.png").unlink()
    with pytest.raises(VGGError, match=r"n2\.xml: image not found"):
        read_voc_annotations(ann, img)


# -- hold-out -----------------------------------------------------------------------------------


def test_split_by_image_keeps_boxes_together_and_is_reproducible(tmp_path):
    rows = []
    for c in ("a", "b"):
        for n in range(10):
            write_image(tmp_path / c / f"{n}.png", (16, 16), seed=n)
            rows += [f"{c}/{n}.png,{c},0,0,{1 + n},8", f"{c}/{n}.png,{c},4,4,16,16"]
    path = tmp_path / "boxes.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n")
    src = read_box_csv(path)
    keep, held = split_by_image(src, 0.2, seed=1)
    assert len(held) == 4 and len(keep) == 16
    assert {im.id for im in keep.images}.isdisjoint({im.id for im in held.images})
    assert sorted([im.id for im in keep.images] + [im.id for im in held.images]) == sorted(
        im.id for im in src.images
    )
    assert all(len(im.boxes) == 2 for im in keep.images + held.images)
    assert sorted(im.label for im in held.images) == [0, 0, 1, 1]  # stratified by class
    again = split_by_image(src, 0.2, seed=1)[1]
    assert [im.id for im in again.images] == [im.id for im in held.images]
    assert [im.id for im in split_by_image(src, 0.2, seed=2)[1].images] != [im.id for im in held.images]


# -- one factory: box files are sources ---------------------------------------------------------


def test_open_source_reads_a_box_csv_as_a_source_with_its_boxes(folder):
    from vggnet.data.boxfiles import BoxSource
    from vggnet.data.datasets import open_source

    src = open_source(write_csv(folder, GOOD))
    assert isinstance(src, BoxSource) and src.classes == ["cat", "dog"]
    # one sample per image (not per box row), read and decoded like any other source
    assert len(src) == 3 and [label for _, label in src.samples] == [im.label for im in src.images]
    assert src.read(1).size == (30, 30)
    part = src.subset([2, 0])  # a subset keeps each image's boxes beside it
    assert [im.id for im in part.images] == part.ids == ["train/dog/d2.jpg", "train/dog/d1.png"]
    assert len(part.images[1].boxes) == 2


def test_open_source_reads_a_folder_of_xml_annotations(voc):
    from vggnet.data.boxfiles import BoxSource
    from vggnet.data.datasets import open_source

    ann, img = voc
    src = open_source(ann, img)
    assert isinstance(src, BoxSource) and src.ids == ["dog/n1.JPEG", "dog/n2.png"]
    assert src.read(0).size == (40, 30)


def test_open_source_reads_a_plain_label_file_without_boxes(folder):
    from vggnet.data.boxfiles import BoxSource
    from vggnet.data.datasets import open_source

    labels = folder / "labels.csv"
    labels.write_text("path,label\ntrain/dog/d1.png,dog\ntrain/cat/c1.png,cat\n")
    src = open_source(labels)
    assert not isinstance(src, BoxSource) and len(src) == 2


def test_open_source_for_boxes_reads_any_box_csv_and_refuses_what_has_no_boxes(folder):
    from vggnet.data.boxfiles import BoxSource
    from vggnet.data.datasets import open_source

    # without a header a box CSV cannot be told from a label file: asked for boxes, it is one
    headerless = write_csv(folder, GOOD, header=False)
    src = open_source(headerless, boxes=True)
    assert isinstance(src, BoxSource) and len(src.images[0].boxes) == 2
    # a box row that is not a box: failed by default, dropped with on_bad="skip"
    bad = write_csv(folder, GOOD + ["train/cat/c1.png,cat,20,0,10,30"])
    with pytest.raises(VGGError, match="boxes.csv"):
        open_source(bad, boxes=True)
    assert len(open_source(bad, boxes=True, on_bad="skip").skipped) == 1
    with pytest.raises(VGGError, match="box data not found"):
        open_source(folder / "nowhere.csv", boxes=True)
    with pytest.raises(VGGError, match="no .xml annotation files"):
        open_source(folder / "train", boxes=True)
