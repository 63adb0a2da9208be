/**
 * The texts the benchmarks score: web alt-texts of spread lengths (3 to 33 word pieces once
 * tokenized with BLIP's vocab) and caption-like texts of 6 to 13 word pieces, as a real
 * captioner writes them. Random-weight captions are long word-piece gibberish that would pad
 * every ITM call to the 35-token cap, which no real run sees.
 */
export const WEB_TEXTS = [
  'sunset',
  'IMG_2041.jpg',
  'red bicycle leaning against a brick wall',
  'Two dogs playing in the snow near a wooden fence on a bright winter morning',
  'Buy now: stainless steel kitchen knife set, 8 pieces, with wooden block, free shipping',
  'family photo',
  'view of the old harbour from the hill, summer 2019',
  'A bowl of ramen with a soft boiled egg, green onions, nori and slices of roast pork on a dark wooden table',
];

export const CAPTION_TEXTS = [
  'a dog running on the beach',
  'a plate of food on a table',
  'a man riding a bike down a street',
  'a group of people standing in front of a building',
  'a cat sitting on a window sill',
  'a red car parked on the side of the road next to a tree',
  'a bowl of soup with noodles and an egg',
  'a view of a city at night',
];

/** Web text and a caption per image, chosen so that lengths mix within a batch. */
export function textsOfImage(i: number): string[] {
  return [WEB_TEXTS[i % WEB_TEXTS.length], CAPTION_TEXTS[(i * 3) % CAPTION_TEXTS.length]];
}
