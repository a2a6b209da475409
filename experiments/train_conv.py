"""Train a conv-decoder FSQ tokenizer on 64-px ShapesWorld for N minutes (CPU), then measure
held-out PSNR/SSIM, codebook usage and the arm-data evaluator's parse-back rate."""
import argparse, json, time, sys
import torch, lightning as L
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.decoders.conv import ConvDecoder
from arm_tokenizer.losses.pixel import PixelReconstructionLoss
from arm_tokenizer.lightning_module import TokenizerTrainer
from arm_data.shapes.datamodule import ShapesWorldDataModule

p = argparse.ArgumentParser()
p.add_argument("--minutes", type=float, default=5)
p.add_argument("--patch", type=int, default=8)
p.add_argument("--levels", type=str, default="8,5,5,5")
p.add_argument("--enc_dim", type=int, default=64)
p.add_argument("--channels", type=int, default=64)
p.add_argument("--min_channels", type=int, default=16)
p.add_argument("--enc_width", type=int, default=16)
p.add_argument("--val_every", type=int, default=200)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--sched_steps", type=int, default=100000, help="cosine horizon (LR decays to 0.1x)")
p.add_argument("--warmup", type=int, default=50)
p.add_argument("--distance", default="l1")
p.add_argument("--out", default="runs/measure/run")
p.add_argument("--enc_res", type=int, default=0)
p.add_argument("--dec_res", type=int, default=1)
p.add_argument("--final_res", type=int, default=0)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--max_width", type=int, default=128)
p.add_argument("--init", default=None, help="continue from an exported tokenizer dir")
a = p.parse_args()
levels = [int(x) for x in a.levels.split(",")]
torch.manual_seed(0)
torch.set_num_threads(a.threads)
enc = CNNEncoder(patch_size=a.patch, width=a.enc_width, max_width=a.max_width, num_res_blocks=a.enc_res, out_dim=a.enc_dim)
module = TokenizerTrainer(enc, FSQQuantizer(levels=levels), ConvDecoder(in_dim=a.enc_dim, patch_size=a.patch, channels=a.channels, min_channels=a.min_channels, num_res_blocks=a.dec_res, final_res_blocks=a.final_res),
                          proj_in=LinearProjection(a.enc_dim, len(levels)), proj_out=LinearProjection(len(levels), a.enc_dim),
                          losses=[PixelReconstructionLoss(distance=a.distance)], image_size=64, lr=a.lr, warmup_steps=a.warmup,
                          max_steps=a.sched_steps, export_dir=a.out + "/export", num_grid_images=8)
if a.init:
    from arm_tokenizer.tokenizer import VisualTokenizer
    module.tokenizer.load_state_dict(VisualTokenizer.from_pretrained(a.init).state_dict())
dm = ShapesWorldDataModule(image_size=64, batch_size=a.batch, train_length=200000, val_length=128, num_workers=0)
tr = L.Trainer(max_time={"minutes": a.minutes}, default_root_dir=a.out, val_check_interval=a.val_every, limit_val_batches=2,
               enable_checkpointing=False, log_every_n_steps=20, enable_progress_bar=False, num_sanity_val_steps=0)
t0 = time.time()
tr.fit(module, dm)
print("trained", tr.global_step, "steps in", round(time.time() - t0), "s", flush=True)
