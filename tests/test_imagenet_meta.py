import numpy as np
import pytest
from scipy.io import savemat

from helpers import write_image
from vggnet.data.datasets import file_list
from vggnet.data.imagenet import (
    class_name,
    devkit_synsets,
    devkit_to_labels,
    imagenet_classes,
    imagenet_names,
    loc_solution_to_labels,
    write_label_file,
)
from vggnet.errors import VGGError

# The devkit numbers its synsets its own way: ID 1 is the kit fox, not the first wnid in sorted order.
DEVKIT = [
    (1, "n02119789", "kit fox, Vulpes macrotis"),
    (2, "n02100735", "English setter"),
    (3, "n01440764", "tench, Tinca tinca"),
]


def write_meta_mat(path, synsets=DEVKIT):
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    table = np.zeros((len(synsets), 1), dtype=dtype)  # MATLAB's n x 1 struct array, as in the devkit
    for i, (ident, wnid, words) in enumerate(synsets):
        table[i, 0] = (np.array([[ident]], dtype=np.uint16), wnid, words, 0)
    savemat(path, {"synsets": table})
    return path


def test_packaged_table_has_the_1000_classes_in_index_order():
    classes = imagenet_classes()
    assert len(classes) == len(set(classes)) == 1000
    assert classes == sorted(classes)
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in classes)
    names = imagenet_names()
    assert list(names) == classes
    assert names["n01440764"] == "tench" and class_name("n02102040") == "English springer"
    assert class_name("n01484850") == "great white shark"  # underscores of the source names are spaces
    assert classes[0] == "n01440764" and classes[-1] == "n15075141"
    with pytest.raises(VGGError, match="unknown ImageNet class 'n00000000'"):
        class_name("n00000000")


def test_devkit_ids_map_through_meta_mat(tmp_path):
    meta = write_meta_mat(tmp_path / "meta.mat")
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("3\n1\n2\n")
    assert devkit_synsets(meta) == {1: "n02119789", 2: "n02100735", 3: "n01440764"}
    rows = devkit_to_labels(truth, meta)
    assert rows == [
        ("ILSVRC2012_val_00000001.JPEG", "n01440764"),
        ("ILSVRC2012_val_00000002.JPEG", "n02119789"),
        ("ILSVRC2012_val_00000003.JPEG", "n02100735"),
    ]
    # Sorted-wnid indices would have been wrong: ID 1 is index 2 here, not 0.
    assert sorted(w for _, w, _ in DEVKIT).index("n02119789") == 2


def test_label_file_is_read_by_file_list(tmp_path):
    meta = write_meta_mat(tmp_path / "meta.mat")
    truth = tmp_path / "truth.txt"
    truth.write_text("3\n1\n2\n")
    images = tmp_path / "val"
    for i in (1, 2, 3):
        write_image(images / f"ILSVRC2012_val_{i:08d}.JPEG", fmt="JPEG", seed=i)
    rows = devkit_to_labels(truth, meta, image_dir=images)
    out = write_label_file(rows, images / "labels.csv")
    assert out.read_text().splitlines()[:2] == ["path,label", "ILSVRC2012_val_00000001.JPEG,n01440764"]
    source = file_list(out, classes=imagenet_classes())
    assert [label for _, label in source.samples] == [
        0,
        imagenet_classes().index("n02119789"),
        imagenet_classes().index("n02100735"),
    ]
    with pytest.raises(VGGError, match="refusing to overwrite"):
        write_label_file(rows[:1], out)
    write_label_file(rows[:1], out, force=True)
    assert len(out.read_text().splitlines()) == 2
    (images / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(
        VGGError, match="1 of the 3 listed images are missing, e.g. ILSVRC2012_val_00000002.JPEG"
    ):
        devkit_to_labels(truth, meta, image_dir=images)


def test_devkit_errors_name_file_and_line(tmp_path):
    meta = write_meta_mat(tmp_path / "meta.mat")
    truth = tmp_path / "truth.txt"
    truth.write_text("1\n7\n")
    with pytest.raises(VGGError, match=r"truth.txt:2: ILSVRC2012_ID 7 is not among the 3 synsets"):
        devkit_to_labels(truth, meta)
    truth.write_text("1\nkit fox\n")
    with pytest.raises(VGGError, match=r"truth.txt:2: expected an ILSVRC2012_ID"):
        devkit_to_labels(truth, meta)
    not_mat = tmp_path / "not.mat"
    not_mat.write_bytes(b"\x00" * 200)
    with pytest.raises(VGGError, match="not.mat: not a readable MAT file"):
        devkit_to_labels(truth, not_mat)
    other = tmp_path / "other.mat"
    savemat(other, {"x": np.zeros(3)})
    with pytest.raises(VGGError, match="no 'synsets' struct array"):
        devkit_synsets(other)
    dup = write_meta_mat(tmp_path / "dup.mat", DEVKIT + [(1, "n01443537", "goldfish")])
    with pytest.raises(VGGError, match="ILSVRC2012_ID 1 occurs twice"):
        devkit_synsets(dup)


def test_loc_solution_gives_the_first_wnid(tmp_path):
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000002,n02119789 10 20 110 120 n02119789 5 6 7 8 \n"
        "ILSVRC2012_val_00000001,n01440764 1 2 3 4\n"
    )
    assert loc_solution_to_labels(csv) == [
        ("ILSVRC2012_val_00000001.JPEG", "n01440764"),
        ("ILSVRC2012_val_00000002.JPEG", "n02119789"),
    ]
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3\n")
    with pytest.raises(VGGError, match=r"LOC_val_solution.csv:2: expected 'wnid xmin ymin xmax ymax'"):
        loc_solution_to_labels(csv)
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001\n")
    with pytest.raises(VGGError, match=r"LOC_val_solution.csv:2: expected 'ImageId,PredictionString'"):
        loc_solution_to_labels(csv)
    csv.write_text("ImageId,PredictionString\na,n01440764 1 2 3 4\na,n01440764 1 2 3 4\n")
    with pytest.raises(VGGError, match=r":3: image a listed twice"):
        loc_solution_to_labels(csv)
