"""Pure metric functions over precomputed maps, boxes and per-image values.

- :mod:`.protocols`: the paper's localization protocol and Choe et al.'s MaxBoxAcc(V2);
- :mod:`.similarity`: Pearson r, SSIM, top-region IoU of two maps;
- :mod:`.faithfulness`: deletion / insertion, average drop / increase, ROAD;
- :mod:`.baselines`: the random and centre-Gaussian reference maps;
- :mod:`.stats`: medians and spreads, paired comparisons.

Maps -> boxes and IoU are in :mod:`eigencam.postprocess.boxes` (``eigencam batch`` uses them
too). None of them keeps state or writes files; the benchmarks built on them are in the sibling
modules of :mod:`eigencam.evaluation`.
"""
