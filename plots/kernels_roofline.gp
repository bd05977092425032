# kernels_roofline.gp: kernel cases against the measured ceilings
# written by dsa-bench plot; reads kernels_roofline.dat. Redraw by hand: gnuplot kernels_roofline.gp (writes kernels_roofline.png, kernels_roofline.svg)
if (!exists("out")) out = "kernels_roofline"
do for [fmt in "png svg"] {
if (fmt eq "png") {
  set terminal pngcairo size 2636,720 noenhanced font "sans,11"
} else {
  set terminal svg size 2636,720 dynamic noenhanced font "sans,11" background rgb "white"
}
set output out.".".fmt
reset
set datafile missing "-"
set style fill solid 1.0 border lc rgb "#404040"
set border 3
set tics nomirror
set grid ytics lc rgb "#e4e4e4" lt 1
set key outside bottom center vertical Left reverse samplen 2
set title "Kernels: achieved rate as % of the ceiling measured in the same run (87 cases)\nNVIDIA H200: bf16 810 TFLOP/s, fp8 1543 TFLOP/s, copy 4251 GB/s; kernels-h200.h5"
set ylabel "% of the measured ceiling"
set xrange [-0.8:98.8]
set yrange [0:124]
set format y "%g%%"
set xtics rotate by 90 right scale 0 font ",9"
set boxwidth 0.4 absolute
set xlabel "kernel case: name, heads h=, context (tokens), decode batch B="
set arrow 1 from graph 0, first 100 to graph 1, first 100 nohead dt 2 lc rgb "#808080" back
plot \
  "kernels_roofline.dat" using ($1 - 0.2):11:xtic(2) with boxes lc rgb "#3b7dd8" title "TFLOP/s, % of the compute ceiling (fp8: indexer logits; bf16: sparse MLA)", \
  "kernels_roofline.dat" using ($1 + 0.2):12 with boxes lc rgb "#e69f00" title "GB/s, % of the copy bandwidth (bytes as counted; sparse_mla_prefill: gathered rows, mostly L2)"
unset multiplot
set output
}
