"use client";
/** The Overlay section: the vessel colour and the layer's opacity (CSS only, so moving it costs nothing). */

interface OverlaySectionProps {
  colour: string;
  onColour: (colour: string) => void;
  opacity: number;
  onOpacity: (opacity: number) => void;
  opacityDisabled: boolean;
}

export default function OverlaySection({ colour, onColour, opacity, onOpacity, opacityDisabled }: OverlaySectionProps) {
  return (
    <section aria-labelledby="overlay-heading">
      <h2 id="overlay-heading">Overlay</h2>
      <div className="field">
        <label htmlFor="colour">Colour</label>
        <input id="colour" type="color" value={colour} onChange={(e) => onColour(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor="opacity">Opacity</label>
        <input
          id="opacity"
          type="range"
          min={0}
          max={1}
          step={0.05}
          value={opacity}
          onChange={(e) => onOpacity(Number(e.target.value))}
          disabled={opacityDisabled}
        />
        <output htmlFor="opacity" className="value">
          {Math.round(opacity * 100)}%
        </output>
      </div>
    </section>
  );
}
