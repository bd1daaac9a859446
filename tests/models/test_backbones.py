"""Frame encoders: stages, freezing by name, preprocessing config, weights loading (offline)."""
from __future__ import annotations

import pickle
import urllib.request

import pytest
import torch
import torchvision

from cnnlstm import WeightsNotFoundError, create_encoder, create_model, list_backbones
from cnnlstm.models.weights import imagenet_weights_file


def test_backbones_are_registered():
    assert set(list_backbones()) == {"resnet18", "resnet50", "efficientnet_b0", "test_tiny"}


@pytest.mark.parametrize(
    "name,stages,last,dim",
    [
        ("resnet18", ("stem", "layer1", "layer2", "layer3", "layer4"), ("layer4",), 512),
        ("resnet50", ("stem", "layer1", "layer2", "layer3", "layer4"), ("layer4",), 2048),
        ("efficientnet_b0", ("stem", *(f"stage{i}" for i in range(1, 8)), "conv_head"), ("stage7", "conv_head"), 1280),
        ("test_tiny", ("stem", "layer1", "layer2"), ("layer2",), 4 * 32),  # pooled over a 2 x 2 grid by default
    ],
)
def test_stages_features_and_data_config(name, stages, last, dim):
    enc = create_encoder(name).eval()
    assert enc.stage_names == stages and enc.last_stages == last and enc.num_features == dim
    assert set(enc.data_config) == {"mean", "std", "input_size", "interpolation"}
    feats, maps = enc(torch.randn(1, 2, 3, 64, 64))
    assert feats.shape == (1, 2, dim) and maps is None


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_gradual_unfreezing_names_the_real_last_stage(name):
    """The seed's phase 2 looked for 'layer4' in names of an nn.Sequential and unfroze nothing."""
    enc = create_encoder(name)
    enc.freeze()
    assert not [n for n, p in enc.named_parameters() if p.requires_grad]
    enc.unfreeze("last")
    trainable = {n.split(".")[1] for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == set(enc.last_stages)
    assert enc.trainable_stages == enc.last_stages
    enc.unfreeze()
    assert all(p.requires_grad for p in enc.parameters())


def test_unknown_stage_lists_the_real_ones():
    with pytest.raises(ValueError, match=r"no stage \['layer5'\].*'layer4'"):
        create_encoder("resnet18").freeze(["layer5"])


def test_frozen_stages_stay_in_eval_mode_and_unfrozen_follow_train():
    enc = create_encoder("test_tiny").freeze(["stem"])
    enc.train()
    assert not enc.stages["stem"][1].training and enc.stages["layer1"][1].training
    enc.unfreeze("stem")
    assert enc.stages["stem"][1].training


def test_spatial_attention_pool_for_any_backbone_returns_maps():
    enc = create_encoder("resnet18", pool="attention").eval()
    feats, maps = enc(torch.rand(2, 3, 3, 64, 64))
    assert feats.shape == (2, 3, 512) and maps.shape == (2, 3, 2, 2)
    assert ((maps > 0) & (maps < 1)).all()
    enc.freeze()
    assert not enc.cacheable, "the attention pool is new and stays trainable"
    assert create_encoder("test_tiny").freeze().cacheable


def test_no_pretrained_weights_by_default_and_no_download_offline(monkeypatch, tmp_path):
    """weights=None never touches the network; weights="imagenet" downloads on first use (see
    test_weights_download.py) unless CNNLSTM_OFFLINE=1, which names the file, folder and URL."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CNNLSTM_OFFLINE", "1")
    monkeypatch.delenv("CNNLSTM_WEIGHTS_URL", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    create_model("cnn_lstm", num_classes=3, backbone="resnet18")  # weights=None: random init
    path, url = imagenet_weights_file("resnet18")
    with pytest.raises(WeightsNotFoundError) as err:
        create_model("cnn_lstm", num_classes=3, backbone="resnet18", weights="imagenet")
    message = str(err.value)
    assert path.name in message and str(path.parent) in message and url in message
    assert "downloads are off (CNNLSTM_OFFLINE=1)" in message
    assert url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert str(path).startswith(str(tmp_path)) and not path.parent.exists()


def test_imagenet_weights_load_from_the_torch_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18(weights=None)
    path, _ = imagenet_weights_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = create_model("cnn_lstm", num_classes=3, backbone="resnet18", weights="imagenet")
    assert torch.equal(model.encoder.stages["stem"][0].weight, reference.conv1.weight)
    assert torch.equal(model.encoder.stages["layer4"][1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_weights_from_a_local_safetensors_or_torch_file(tmp_path):
    from safetensors.torch import save_file

    reference = torchvision.models.resnet18(weights=None)
    st, pt = tmp_path / "r18.safetensors", tmp_path / "r18.pth"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(st))
    torch.save({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}}, pt)
    for path in (st, pt):
        enc = create_encoder("resnet18", weights=path)
        assert torch.equal(enc.stages["layer2"][0].conv1.weight, reference.layer2[0].conv1.weight)


def test_bad_weight_files_are_refused_with_reasons(tmp_path):
    fake = tmp_path / "evil.safetensors"
    fake.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="content is not safetensors"):
        create_encoder("resnet18", weights=fake)
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), wrong)
    with pytest.raises(ValueError, match="do not fit resnet18"):
        create_encoder("resnet18", weights=wrong)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_encoder("resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="test_tiny has no ImageNet weights"):
        create_encoder("test_tiny", weights="imagenet")


def test_channels_last_gives_the_same_features():
    enc = create_encoder("test_tiny").eval()
    x = torch.randn(2, 3, 3, 32, 32)
    ref, _ = enc(x)
    enc = enc.to(memory_format=torch.channels_last)
    got, _ = enc(x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_pool_defaults_to_the_backbones_choice_and_any_pool_can_be_asked_for():
    assert create_encoder("resnet18").num_features == 512  # global average
    tiny = {pool: create_encoder("test_tiny", pool=pool).num_features for pool in (None, "avg", "grid", "attention")}
    assert tiny == {None: 128, "avg": 32, "grid": 128, "attention": 32}
