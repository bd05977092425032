# indexer_share.gp: indexer share of the full-indexer config against context
# written by dsa-bench plot; reads indexer_share.dat. Redraw by hand: gnuplot indexer_share.gp (writes indexer_share.png, indexer_share.svg)
if (!exists("out")) out = "indexer_share"
do for [fmt in "png svg"] {
if (fmt eq "png") {
  set terminal pngcairo size 860,600 noenhanced font "sans,11"
} else {
  set terminal svg size 860,600 dynamic noenhanced font "sans,11" background rgb "white"
}
set output out.".".fmt
reset
set datafile missing "-"
set style fill solid 1.0 border lc rgb "#404040"
set border 3
set tics nomirror
set grid ytics lc rgb "#e4e4e4" lt 1
set title "Indexer share of the time (full-indexer config)\nglm-4.7-flash-dsa, 47 of 47 layers; NVIDIA H200 (GPU)"
set xlabel "context length (tokens)"
set ylabel "indexer time proportion (%)"
set xrange [-5200:215200]
set yrange [0:100]
set grid xtics ytics lc rgb "#e4e4e4" lt 1 dt 2
set xtics ("10K" 10000, "60K" 60000, "120K" 120000, "200K" 200000)
set key outside bottom center horizontal samplen 4
set style textbox opaque noborder margins 1,1
plot \
  "indexer_share.dat" index 0 using 1:4 with linespoints lw 2.5 dt 1 pt 7 ps 1.6 lc rgb "#3b65e0" title "Prefill", \
  "indexer_share.dat" index 0 using 7:8:(sprintf("%.0f%%", $4)) with labels boxed tc rgb "#3b65e0" notitle, \
  "indexer_share.dat" index 1 using 1:4 with linespoints lw 2.5 dt 2 pt 5 ps 1.6 lc rgb "#d43d2f" title "Decode, batch 1", \
  "indexer_share.dat" index 1 using 7:8:(sprintf("%.0f%%", $4)) with labels boxed tc rgb "#d43d2f" notitle, \
  "indexer_share.dat" index 2 using 1:4 with linespoints lw 2.5 dt 2 pt 5 ps 1.6 lc rgb "#e69f00" title "Decode, batch 8", \
  "indexer_share.dat" index 2 using 7:8:(sprintf("%.0f%%", $4)) with labels boxed tc rgb "#e69f00" notitle
unset multiplot
set output
}
