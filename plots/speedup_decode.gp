# speedup_decode.gp: decode speedup over the full-indexer config, one panel per batch
# written by dsa-bench plot; reads speedup_decode.dat. Redraw by hand: gnuplot speedup_decode.gp (writes speedup_decode.png, speedup_decode.svg)
if (!exists("out")) out = "speedup_decode"
do for [fmt in "png svg"] {
if (fmt eq "png") {
  set terminal pngcairo size 1480,540 noenhanced font "sans,11"
} else {
  set terminal svg size 1480,540 dynamic noenhanced font "sans,11" background rgb "white"
}
set output out.".".fmt
reset
set datafile missing "-"
set style fill solid 1.0 border lc rgb "#404040"
set border 3
set tics nomirror
set grid ytics lc rgb "#e4e4e4" lt 1
set multiplot layout 1,2
set title "(b) Decode, batch 1 (per-request throughput)\nglm-4.7-flash-dsa, 47 of 47 layers; NVIDIA H200 (GPU)"
set xlabel "context length (tokens)"
set ylabel "relative speedup (%)"
set xrange [-0.5:3.5]
set yrange [0:152]
set xtics ("10K" 0, "60K" 1, "120K" 2, "200K" 3)
set format y "%g%%"
set boxwidth 0.2667 absolute
set key outside bottom center horizontal samplen 2
set arrow 1 from graph 0, first 100 to graph 1, first 100 nohead dt 2 lc rgb "#808080" back
plot \
  "speedup_decode.dat" index 0 using 1:5 with boxes lc rgb "#c8c8c8" title "full", \
  "speedup_decode.dat" index 0 using 1:5:(sprintf("%.0f%%", $5)) with labels offset 0,0.6 font ",9" notitle, \
  "speedup_decode.dat" index 1 using 1:5 with boxes lc rgb "#3b7dd8" title "1/2", \
  "speedup_decode.dat" index 1 using 1:5:(sprintf("%.0f%%", $5)) with labels offset 0,0.6 font ",9" notitle, \
  "speedup_decode.dat" index 2 using 1:5 with boxes lc rgb "#d9472b" title "1/4", \
  "speedup_decode.dat" index 2 using 1:5:(sprintf("%.0f%%", $5)) with labels offset 0,0.6 font ",9" notitle
set title "(c) Decode, batch 8 (full throughput)\nglm-4.7-flash-dsa, 47 of 47 layers; NVIDIA H200 (GPU)"
set xlabel "context length (tokens)"
set ylabel "relative speedup (%)"
set xrange [-0.5:3.5]
set yrange [0:152]
set xtics ("10K" 0, "60K" 1, "120K" 2, "200K" 3)
set format y "%g%%"
set boxwidth 0.2667 absolute
set key outside bottom center horizontal samplen 2
set arrow 1 from graph 0, first 100 to graph 1, first 100 nohead dt 2 lc rgb "#808080" back
plot \
  "speedup_decode.dat" index 3 using 1:5 with boxes lc rgb "#c8c8c8" title "full", \
  "speedup_decode.dat" index 3 using 1:5:(sprintf("%.0f%%", $5)) with labels offset 0,0.6 font ",9" notitle, \
  "speedup_decode.dat" index 4 using 1:5 with boxes lc rgb "#3b7dd8" title "1/2", \
  "speedup_decode.dat" index 4 using 1:5:(sprintf("%.0f%%", $5)) with labels offset 0,0.6 font ",9" notitle, \
  "speedup_decode.dat" index 5 using 1:5 with boxes lc rgb "#d9472b" title "1/4", \
  "speedup_decode.dat" index 5 using 1:5:(sprintf("%.0f%%", $5)) with labels offset 0,0.6 font ",9" notitle
unset multiplot
set output
}
