/** How texts are scored and which survive. Defaults are BLIP's. */
export interface FilterOptions {
  /** A text is kept iff its ITM match probability is strictly greater than this. */
  threshold: number;
  /** Which texts may be kept: the web text, the synthetic captions, or both. */
  consider: 'web' | 'synthetic' | 'both';
  /** Keep at most this many texts per image, best ITM first (0: no limit). */
  topK: number;
  /** First token of the ITM input: [ENC] as BLIP was fine-tuned, or [CLS] as Hugging Face does. */
  firstToken: 'enc' | 'cls';
  /** Apply BLIP's pre_caption normalisation to web text before scoring (output keeps the original). */
  normalizeWebText: boolean;
  /** Token budget of the ITM/ITC text input, [CLS]/[ENC] and [SEP] included (BLIP uses 35). */
  maxTextLength: number;
}

export const CAPFILT_FILTER: FilterOptions = {
  threshold: 0.5,
  consider: 'both',
  topK: 0,
  firstToken: 'enc',
  normalizeWebText: true,
  maxTextLength: 35,
};

/** ITM match probability and ITC cosine similarity of one text against one image. */
export interface TextScore {
  itm: number;
  itc: number;
}
