package demo

import (
	"bytes"
	"crypto/sha256"
	"image"
	"image/color"
	"image/png"
)

const avatarSize = 64

// defaultAvatarPNG draws the generic silhouette most users share: a grey
// head and shoulders on a light background.
func defaultAvatarPNG() []byte {
	bg := color.NRGBA{0xe5, 0xe7, 0xeb, 0xff}
	fg := color.NRGBA{0x9c, 0xa3, 0xaf, 0xff}
	img := image.NewPaletted(image.Rect(0, 0, avatarSize, avatarSize), color.Palette{bg, fg})
	for y := range avatarSize {
		for x := range avatarSize {
			head := sq(x-32)+sq(y-24) <= sq(12)
			shoulders := y >= 42 && sq(x-32)+sq(y-64) <= sq(26)
			if head || shoulders {
				img.SetColorIndex(x, y, 1)
			}
		}
	}
	return encodePNG(img)
}

// identiconPNG draws a custom avatar for user id: a mirrored 5x5 pattern in
// a colour, both derived from a hash of the id.
func identiconPNG(id int) []byte {
	sum := sha256.Sum256([]byte{byte(id >> 8), byte(id)})
	bg := color.NRGBA{0xf9, 0xfa, 0xfb, 0xff}
	fg := color.NRGBA{sum[0]/2 + 0x20, sum[1]/2 + 0x20, sum[2]/2 + 0x20, 0xff}
	img := image.NewPaletted(image.Rect(0, 0, avatarSize, avatarSize), color.Palette{bg, fg})
	const cell, margin = 10, 7
	for row := range 5 {
		for col := range 3 {
			if sum[3+row*3+col]&1 == 0 {
				continue
			}
			for _, c := range []int{col, 4 - col} {
				for y := range cell {
					for x := range cell {
						img.SetColorIndex(margin+c*cell+x, margin+row*cell+y, 1)
					}
				}
			}
		}
	}
	return encodePNG(img)
}

func sq(v int) int { return v * v }

// encodePNG encodes img; the output is deterministic for a given image.
func encodePNG(img image.Image) []byte {
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&b, img); err != nil {
		panic("demo: " + err.Error()) // writing to a bytes.Buffer cannot fail
	}
	return b.Bytes()
}
