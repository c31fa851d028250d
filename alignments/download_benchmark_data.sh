#!/usr/bin/env bash
# Download the public benchmark data used by benchmarks/reproduce.py (needs internet access).
#
#   bash alignments/download_benchmark_data.sh [DEST]      # default DEST: ../shared/data
#
# Builds the layout benchmarks/datasets.csv and bench_classify expect (DEST/BLAT_ECOLX/msa.a2m, .../dms.csv,
# P53_HUMAN/msa.a2m, <protein>/clinvar_labels.csv, ...)
# from pinned commits of the public repositories listed below, and checks every file against its
# git blob id, so the bytes are exactly those the committed results were computed from.
# Not run by the tests. Needs curl and git (for `git hash-object`).
set -euo pipefail

DEST="${1:-../shared/data}"
GH="https://raw.githubusercontent.com"

# dest path | repository@commit/path | git blob id
FILES=(
  "BLAT_ECOLX/msa.a2m|chloechsu/combining-evolutionary-and-assay-labelled-data/fdaa5bba8ffbb8ab25de57736fed8f9126838ae3/alignments/BLAT_ECOLX.a2m|c9f9c74905bae78e596c91b561369cd1f55d20ba"
  "BLAT_ECOLX/dms.csv|debbiemarkslab/DeepSequence/fd5c272b273385c0b87fce9dec410a9d74463393/examples/mutations/BLAT_ECOLX_Ranganathan2015.csv|abf46dbd534dce4e11ae597716ea64e9d111e3b8"
  "GFP_AEQVI/msa.a2m|EvanKomp/aide_predict/7196c296e711cc80b77edb095f8c3f6aab1969bc/tests/data/GFP_AEQVI_full_04-29-2022_b08.a2m|efc23aa8f142e4e9363d29b885621545c7a1dbad"
  "GFP_AEQVI/dms.csv|EvanKomp/aide_predict/7196c296e711cc80b77edb095f8c3f6aab1969bc/tests/data/GFP_AEQVI_Sarkisyan_2016_only_sp.csv|00c815477439d5913ed5213b5a746b8bd32ee995"
  "PTEN_HUMAN/msa.a2m|OATML-Markslab/EVE/460d70efeeeded58bc69227a203540d68953ae88/data/MSA/PTEN_HUMAN_b1.0.a2m|6fc9f024d6cba346eb7daa706c7aae86c9467132"
  "PTEN_HUMAN/PTEN_HUMAN_theta_0.2.npy|OATML-Markslab/EVE/528dcd7dcbd5f8c5e8105b1f5baa4ee4d8aa5a3a/data/weights/PTEN_HUMAN_theta_0.2.npy|19048055aa6de463fa6e16bb384bfa0fc38ae0d3"
  "P53_HUMAN/msa.a2m|OATML-Markslab/EVE/460d70efeeeded58bc69227a203540d68953ae88/data/MSA/P53_HUMAN_b0.1.a2m|c7e90ba47e1ff9e68cf16bf74672ab1c42b3a552"
  "reference/ClinVar_labels_P53_PTEN_RASH_SCN5A.csv|OATML-Markslab/EVE/460d70efeeeded58bc69227a203540d68953ae88/data/labels/ClinVar_labels_P53_PTEN_RASH_SCN5A.csv|08dda9ff99c563ea66bf0b84a38b8639d1098454"
  "PTEN_HUMAN/dms.csv|dms-viz/configure_dms_viz/655b0f4b75b3e28605af258dd2aceef380de8a70/tests/PTEN-VAMPseq/input/PTEN-VAMPseq.csv|cfc211ad422f7e074ae151726f6c320df577a268"
  "reference/DMS_substitutions.csv|OATML-Markslab/ProteinGym/bb685245f8f4bb95a5b54b470396c23826cd6284/reference_files/DMS_substitutions.csv|8d1ea9a19c0404b511cd24378b25c2a5f86f10e9"
  "reference/DMS_substitutions_Spearman_DMS_level.csv|OATML-Markslab/ProteinGym/bb685245f8f4bb95a5b54b470396c23826cd6284/benchmarks/DMS_zero_shot/substitutions/Spearman/DMS_substitutions_Spearman_DMS_level.csv|b5affd05e5bf83eecf5d617ddb56168d7e80bc6f"
  "reference/rho_pp.csv|facebookresearch/esm/2b369911bb5b4b0dda914521b9475cad1656b2ac/examples/variant-prediction/data/rho_pp.csv|238c234b031ebcdc060bfed57bfefbced89479a6"
)

failed=0

# already_there OUT BLOB: true (and said) when OUT holds exactly that git blob
already_there() {
  if [[ -f "$1" && "$(git hash-object "$1")" == "$2" ]]; then echo "ok (already there)  $1"; return 0; fi
  return 1
}

# install_checked TMP OUT BLOB MESSAGE: TMP becomes OUT when it is that blob; else it is dropped and the run fails
install_checked() {
  local got
  got="$(git hash-object "$1")"
  if [[ "$got" != "$3" ]]; then
    echo "FAILED checksum     $2 (blob $got, expected $3)" >&2; rm -f "$1"; failed=1; return 0
  fi
  mv "$1" "$2"
  echo "$4"
}

for entry in "${FILES[@]}"; do
  IFS='|' read -r path src blob <<<"$entry"
  out="$DEST/$path"
  already_there "$out" "$blob" && continue
  mkdir -p "$(dirname "$out")"
  if ! curl -fsSL --retry 3 -o "$out.part" "$GH/$src"; then
    echo "FAILED download     $GH/$src" >&2; rm -f "$out.part"; failed=1; continue
  fi
  install_checked "$out.part" "$out" "$blob" "downloaded          $out"
done

# Each protein's ClinVar labels (the classify benchmark): EVE's label file, its header and that protein's rows
# dest path | protein_name | git blob id
LABELS=(
  "P53_HUMAN/clinvar_labels.csv|P53_HUMAN|f55a5df2217dae09df267f695aaabe1472c621b7"
  "PTEN_HUMAN/clinvar_labels.csv|PTEN_HUMAN|8200738a7f6057d4276ae5f74254a291990ae503"
)
all_labels="$DEST/reference/ClinVar_labels_P53_PTEN_RASH_SCN5A.csv"
for entry in "${LABELS[@]}"; do
  IFS='|' read -r path protein blob <<<"$entry"
  out="$DEST/$path"
  already_there "$out" "$blob" && continue
  if [[ ! -f "$all_labels" ]]; then
    echo "FAILED (no labels)  $out: $all_labels was not downloaded" >&2; failed=1; continue
  fi
  mkdir -p "$(dirname "$out")"
  tr -d '\r' < "$all_labels" | awk -F, -v p="$protein" 'NR == 1 || $1 == p' > "$out.part"
  install_checked "$out.part" "$out" "$blob" "made                $out (the $protein rows of $all_labels)"
done

cat <<'TXT'

Larger data sets (not needed by the benchmarks here):
  ProteinGym DMS tables:  https://marks.hms.harvard.edu/proteingym/DMS_ProteinGym_substitutions.zip
  ProteinGym MSAs:        https://marks.hms.harvard.edu/proteingym/DMS_msa_files.zip
TXT
exit $failed
